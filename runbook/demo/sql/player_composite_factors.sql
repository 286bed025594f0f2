-- Phase 4: adjustment factors per player for @date. Needs all four upstreams for @date (see ready:
-- in runbook.yaml); earlier dates of them are built, since upcoming_player_game_context depends on
-- its own past and on all three.
--   usage_spike_score: the last 7 games' usage against the season's, 10 points per 100 % change,
--                      clipped to [-3, 3]; 0 when either is unknown (the seeds' "always 0" bug).
--   fatigue_score:     100 = fresh; a back-to-back and minutes beyond 30 a game take points off.
--   pace_score:        both teams' recent pace against the league's last 30 days.
--   matchup_score:     the opponent's recent defensive rating against the league's (higher = softer).
MERGE `nba-demo.nba_precompute.player_composite_factors` AS t
USING (
  WITH ctx AS (
    SELECT *
    FROM `nba-demo.nba_analytics.upcoming_player_game_context`
    WHERE game_date = @date
  ),
  season_usage AS (
    SELECT pgs.player_lookup, AVG(pgs.usage_rate) AS season_avg_usage_rate
    FROM `nba-demo.nba_analytics.player_game_summary` AS pgs
    JOIN ctx ON ctx.player_lookup = pgs.player_lookup AND ctx.season_year = pgs.season_year
    WHERE pgs.game_date >= DATE_SUB(@date, INTERVAL 120 DAY) AND pgs.game_date < @date
    GROUP BY pgs.player_lookup
  ),
  league AS (
    SELECT AVG(o.pace) AS pace, AVG(d.defensive_rating) AS def_rating
    FROM `nba-demo.nba_analytics.team_offense_game_summary` AS o
    JOIN `nba-demo.nba_analytics.team_defense_game_summary` AS d
      ON d.game_id = o.game_id AND d.team_abbr = o.team_abbr
    WHERE o.game_date >= DATE_SUB(@date, INTERVAL 30 DAY) AND o.game_date < @date
      AND d.game_date >= DATE_SUB(@date, INTERVAL 30 DAY) AND d.game_date < @date
  ),
  factors AS (
    SELECT
      ctx.*,
      ROUND(su.season_avg_usage_rate, 2) AS season_avg_usage_rate,
      league.pace AS league_pace,
      league.def_rating AS league_def_rating
    FROM ctx
    LEFT JOIN season_usage AS su ON su.player_lookup = ctx.player_lookup
    CROSS JOIN league
  )
  SELECT
    game_date,
    game_id,
    player_lookup,
    team_abbr,
    opponent_team_abbr,
    avg_usage_rate_last_7_games,
    season_avg_usage_rate,
    IF(
      avg_usage_rate_last_7_games IS NULL OR COALESCE(season_avg_usage_rate, 0) = 0,
      0.0,
      ROUND(GREATEST(-3.0, LEAST(3.0,
        10 * (avg_usage_rate_last_7_games - season_avg_usage_rate) / season_avg_usage_rate)), 2)
    ) AS usage_spike_score,
    ROUND(GREATEST(0.0,
      100.0 - IF(back_to_back, 15, 0) - 2 * GREATEST(COALESCE(avg_minutes_last_10, 0) - 30, 0)), 2)
      AS fatigue_score,
    COALESCE(ROUND((team_pace_last_10 + opponent_pace_last_10) / 2 - league_pace, 2), 0.0) AS pace_score,
    COALESCE(ROUND(opponent_def_rating_last_10 - league_def_rating, 2), 0.0) AS matchup_score
  FROM factors
) AS s
ON t.game_date = s.game_date AND t.player_lookup = s.player_lookup
WHEN MATCHED THEN UPDATE SET
  game_id = s.game_id, team_abbr = s.team_abbr, opponent_team_abbr = s.opponent_team_abbr,
  avg_usage_rate_last_7_games = s.avg_usage_rate_last_7_games,
  season_avg_usage_rate = s.season_avg_usage_rate, usage_spike_score = s.usage_spike_score,
  fatigue_score = s.fatigue_score, pace_score = s.pace_score, matchup_score = s.matchup_score
WHEN NOT MATCHED THEN INSERT (
  game_date, game_id, player_lookup, team_abbr, opponent_team_abbr, avg_usage_rate_last_7_games,
  season_avg_usage_rate, usage_spike_score, fatigue_score, pace_score, matchup_score
) VALUES (
  s.game_date, s.game_id, s.player_lookup, s.team_abbr, s.opponent_team_abbr,
  s.avg_usage_rate_last_7_games, s.season_avg_usage_rate, s.usage_spike_score, s.fatigue_score,
  s.pace_score, s.matchup_score
)
WHEN NOT MATCHED BY SOURCE AND t.game_date = @date THEN DELETE
