"""The demo warehouse's tables, in DuckDB's dialect: the raw feeds and the pipeline's targets.

DuckDB schemas stand for BigQuery datasets (``nba_raw``, ``nba_analytics``, ``nba_precompute``,
``nba_predictions``); the pipeline's SQL names them ```nba-demo.<dataset>.<table>``` and the runtime
drops the project part. Raw tables are listed column by column because the generator writes its
rows in this order.
"""

from __future__ import annotations

SCHEMAS = ("nba_raw", "nba_analytics", "nba_precompute", "nba_predictions")

_COUNTS = ", ".join(
    f"{name} BIGINT"
    for name in (
        "points",
        "field_goals_made",
        "field_goals_attempted",
        "three_pointers_made",
        "three_pointers_attempted",
        "free_throws_made",
        "free_throws_attempted",
        "offensive_rebounds",
        "defensive_rebounds",
        "rebounds",
        "assists",
        "steals",
        "blocks",
        "turnovers",
        "personal_fouls",
    )
)

RAW_TABLES: dict[str, str] = {
    "nba_raw.schedule": """
        game_id VARCHAR, game_date DATE, season_year INTEGER,
        home_team_abbr VARCHAR, away_team_abbr VARCHAR, game_status VARCHAR""",
    "nba_raw.player_rosters": """
        season_year INTEGER, team_abbr VARCHAR, player_lookup VARCHAR, player_full_name VARCHAR,
        roster_slot INTEGER""",
    # minutes is the feed's "MM:SS" text: "0:00" or NULL for players who did not play.
    "nba_raw.bdl_player_boxscores": f"""
        game_id VARCHAR, game_date DATE, season_year INTEGER, team_abbr VARCHAR,
        player_lookup VARCHAR, player_full_name VARCHAR, minutes VARCHAR, dnp_reason VARCHAR,
        {_COUNTS}""",
    # A second feed with gaps: about one game in five has no team box score.
    "nba_raw.nbac_team_boxscore": f"""
        game_id VARCHAR, game_date DATE, season_year INTEGER, team_abbr VARCHAR,
        opponent_team_abbr VARCHAR, is_home BOOLEAN, minutes INTEGER,
        {_COUNTS}""",
}

TARGET_TABLES: dict[str, str] = {
    "nba_analytics.team_offense_game_summary": """
        game_id VARCHAR, game_date DATE, season_year INTEGER, team_abbr VARCHAR,
        opponent_team_abbr VARCHAR, home_game BOOLEAN, team_minutes INTEGER, points BIGINT,
        fg_made BIGINT, fg_attempts BIGINT, three_pt_made BIGINT, three_pt_attempts BIGINT,
        ft_made BIGINT, ft_attempts BIGINT, offensive_rebounds BIGINT, assists BIGINT,
        turnovers BIGINT, possessions DOUBLE, pace DOUBLE, offensive_rating DOUBLE""",
    "nba_analytics.team_defense_game_summary": """
        game_id VARCHAR, game_date DATE, season_year INTEGER, team_abbr VARCHAR,
        opponent_team_abbr VARCHAR, home_game BOOLEAN, points_allowed BIGINT,
        opp_fg_attempts BIGINT, opp_fg_pct DOUBLE, opp_three_pt_pct DOUBLE,
        forced_turnovers BIGINT, opp_possessions DOUBLE, defensive_rating DOUBLE""",
    "nba_analytics.player_game_summary": """
        game_id VARCHAR, game_date DATE, season_year INTEGER, player_lookup VARCHAR,
        player_full_name VARCHAR, team_abbr VARCHAR, opponent_team_abbr VARCHAR, home_game BOOLEAN,
        is_dnp BOOLEAN, dnp_reason VARCHAR, minutes_played DOUBLE, points BIGINT, rebounds BIGINT,
        assists BIGINT, steals BIGINT, blocks BIGINT, turnovers BIGINT, fg_made BIGINT,
        fg_attempts BIGINT, three_pt_made BIGINT, three_pt_attempts BIGINT, ft_made BIGINT,
        ft_attempts BIGINT, ts_pct DOUBLE, usage_rate DOUBLE""",
    "nba_analytics.upcoming_player_game_context": """
        game_date DATE, game_id VARCHAR, season_year INTEGER, player_lookup VARCHAR,
        player_full_name VARCHAR, team_abbr VARCHAR, opponent_team_abbr VARCHAR, home_game BOOLEAN,
        days_rest INTEGER, back_to_back BOOLEAN, games_played_season INTEGER,
        avg_points_last_5 DOUBLE, avg_points_last_10 DOUBLE, points_std_last_10 DOUBLE,
        season_avg_points DOUBLE, avg_minutes_last_10 DOUBLE, avg_usage_rate_last_7_games DOUBLE,
        team_pace_last_10 DOUBLE, opponent_pace_last_10 DOUBLE, opponent_def_rating_last_10 DOUBLE""",
    "nba_precompute.player_composite_factors": """
        game_date DATE, game_id VARCHAR, player_lookup VARCHAR, team_abbr VARCHAR,
        opponent_team_abbr VARCHAR, avg_usage_rate_last_7_games DOUBLE,
        season_avg_usage_rate DOUBLE, usage_spike_score DOUBLE, fatigue_score DOUBLE,
        pace_score DOUBLE, matchup_score DOUBLE""",
    "nba_predictions.ml_feature_store_v2": """
        game_date DATE, game_id VARCHAR, player_lookup VARCHAR, team_abbr VARCHAR,
        opponent_team_abbr VARCHAR, features DOUBLE[], feature_count INTEGER,
        default_feature_count INTEGER, feature_version VARCHAR""",
}


def create_statements() -> list[str]:
    """DDL that (re)creates every demo schema and table, empty."""
    statements = [f"CREATE SCHEMA IF NOT EXISTS {schema}" for schema in SCHEMAS]
    for name, columns in {**RAW_TABLES, **TARGET_TABLES}.items():
        statements.append(f"CREATE OR REPLACE TABLE {name} ({' '.join(columns.split())})")
    return statements
