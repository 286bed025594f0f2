-- Phase 3: one row per player per game, DNPs included. usage_rate needs the team's box score
-- (team_offense_game_summary): it is NULL for DNPs and for games the team feed missed.
MERGE `nba-demo.nba_analytics.player_game_summary` AS t
USING (
  WITH box AS (
    SELECT
      b.*,
      SAFE_CAST(SPLIT(b.minutes, ':')[SAFE_OFFSET(0)] AS INT64)
        + SAFE_CAST(SPLIT(b.minutes, ':')[SAFE_OFFSET(1)] AS INT64) / 60 AS minutes_played
    FROM `nba-demo.nba_raw.bdl_player_boxscores` AS b
    WHERE b.game_date = @date
  ),
  games AS (
    SELECT game_id, home_team_abbr AS team_abbr, away_team_abbr AS opponent_team_abbr, TRUE AS home_game
    FROM `nba-demo.nba_raw.schedule`
    WHERE game_date = @date
    UNION ALL
    SELECT game_id, away_team_abbr, home_team_abbr, FALSE
    FROM `nba-demo.nba_raw.schedule`
    WHERE game_date = @date
  )
  SELECT
    box.game_id,
    box.game_date,
    box.season_year,
    box.player_lookup,
    box.player_full_name,
    box.team_abbr,
    games.opponent_team_abbr,
    games.home_game,
    box.dnp_reason IS NOT NULL AS is_dnp,
    box.dnp_reason,
    ROUND(box.minutes_played, 2) AS minutes_played,
    box.points,
    box.rebounds,
    box.assists,
    box.steals,
    box.blocks,
    box.turnovers,
    box.field_goals_made AS fg_made,
    box.field_goals_attempted AS fg_attempts,
    box.three_pointers_made AS three_pt_made,
    box.three_pointers_attempted AS three_pt_attempts,
    box.free_throws_made AS ft_made,
    box.free_throws_attempted AS ft_attempts,
    ROUND(SAFE_DIVIDE(box.points, 2 * (box.field_goals_attempted + 0.44 * box.free_throws_attempted)), 4) AS ts_pct,
    IF(
      box.minutes_played > 0,
      ROUND(SAFE_DIVIDE(
        100 * (box.field_goals_attempted + 0.44 * box.free_throws_attempted + box.turnovers) * (team.team_minutes / 5),
        box.minutes_played * (team.fg_attempts + 0.44 * team.ft_attempts + team.turnovers)), 2),
      NULL) AS usage_rate
  FROM box
  JOIN games ON games.game_id = box.game_id AND games.team_abbr = box.team_abbr
  LEFT JOIN `nba-demo.nba_analytics.team_offense_game_summary` AS team
    ON team.game_id = box.game_id AND team.team_abbr = box.team_abbr AND team.game_date = @date
) AS s
ON t.game_id = s.game_id AND t.player_lookup = s.player_lookup
WHEN MATCHED THEN UPDATE SET
  game_date = s.game_date, season_year = s.season_year, player_full_name = s.player_full_name,
  team_abbr = s.team_abbr, opponent_team_abbr = s.opponent_team_abbr, home_game = s.home_game,
  is_dnp = s.is_dnp, dnp_reason = s.dnp_reason, minutes_played = s.minutes_played, points = s.points,
  rebounds = s.rebounds, assists = s.assists, steals = s.steals, blocks = s.blocks,
  turnovers = s.turnovers, fg_made = s.fg_made, fg_attempts = s.fg_attempts,
  three_pt_made = s.three_pt_made, three_pt_attempts = s.three_pt_attempts, ft_made = s.ft_made,
  ft_attempts = s.ft_attempts, ts_pct = s.ts_pct, usage_rate = s.usage_rate
WHEN NOT MATCHED THEN INSERT (
  game_id, game_date, season_year, player_lookup, player_full_name, team_abbr, opponent_team_abbr,
  home_game, is_dnp, dnp_reason, minutes_played, points, rebounds, assists, steals, blocks, turnovers,
  fg_made, fg_attempts, three_pt_made, three_pt_attempts, ft_made, ft_attempts, ts_pct, usage_rate
) VALUES (
  s.game_id, s.game_date, s.season_year, s.player_lookup, s.player_full_name, s.team_abbr,
  s.opponent_team_abbr, s.home_game, s.is_dnp, s.dnp_reason, s.minutes_played, s.points, s.rebounds,
  s.assists, s.steals, s.blocks, s.turnovers, s.fg_made, s.fg_attempts, s.three_pt_made,
  s.three_pt_attempts, s.ft_made, s.ft_attempts, s.ts_pct, s.usage_rate
)
WHEN NOT MATCHED BY SOURCE AND t.game_date = @date THEN DELETE
