-- Phase 4: the model's feature vector per player for @date. Element 8 (features[OFFSET(8)]) is
-- usage_spike_score, the feature the seeds found stuck at 0. BigQuery arrays cannot hold NULL, so
-- missing inputs fall back to a default and are counted in default_feature_count.
--   0 avg_points_last_5     1 avg_points_last_10    2 season_avg_points   3 points_std_last_10
--   4 avg_minutes_last_10   5 fatigue_score         6 matchup_score       7 pace_score
--   8 usage_spike_score     9 home_game            10 back_to_back       11 days_rest
--  12 games_played_season
MERGE `nba-demo.nba_predictions.ml_feature_store_v2` AS t
USING (
  SELECT
    pcf.game_date,
    pcf.game_id,
    pcf.player_lookup,
    pcf.team_abbr,
    pcf.opponent_team_abbr,
    [
      CAST(COALESCE(ctx.avg_points_last_5, 10.0) AS FLOAT64),
      CAST(COALESCE(ctx.avg_points_last_10, 10.0) AS FLOAT64),
      CAST(COALESCE(ctx.season_avg_points, 10.0) AS FLOAT64),
      CAST(COALESCE(ctx.points_std_last_10, 5.0) AS FLOAT64),
      CAST(COALESCE(ctx.avg_minutes_last_10, 0.0) AS FLOAT64),
      CAST(pcf.fatigue_score AS FLOAT64),
      CAST(pcf.matchup_score AS FLOAT64),
      CAST(pcf.pace_score AS FLOAT64),
      CAST(pcf.usage_spike_score AS FLOAT64),
      IF(ctx.home_game, 1.0, 0.0),
      IF(ctx.back_to_back, 1.0, 0.0),
      CAST(COALESCE(ctx.days_rest, 2) AS FLOAT64),
      CAST(ctx.games_played_season AS FLOAT64)
    ] AS features,
    13 AS feature_count,
    IF(ctx.avg_points_last_5 IS NULL, 1, 0) + IF(ctx.avg_points_last_10 IS NULL, 1, 0)
      + IF(ctx.season_avg_points IS NULL, 1, 0) + IF(ctx.points_std_last_10 IS NULL, 1, 0)
      + IF(ctx.avg_minutes_last_10 IS NULL, 1, 0) + IF(ctx.days_rest IS NULL, 1, 0)
      + IF(ctx.avg_usage_rate_last_7_games IS NULL, 1, 0) AS default_feature_count,
    'v2_13features' AS feature_version
  FROM `nba-demo.nba_precompute.player_composite_factors` AS pcf
  JOIN `nba-demo.nba_analytics.upcoming_player_game_context` AS ctx
    ON ctx.player_lookup = pcf.player_lookup AND ctx.game_date = @date
  WHERE pcf.game_date = @date
) AS s
ON t.game_date = s.game_date AND t.player_lookup = s.player_lookup
WHEN MATCHED THEN UPDATE SET
  game_id = s.game_id, team_abbr = s.team_abbr, opponent_team_abbr = s.opponent_team_abbr,
  features = s.features, feature_count = s.feature_count,
  default_feature_count = s.default_feature_count, feature_version = s.feature_version
WHEN NOT MATCHED THEN INSERT (
  game_date, game_id, player_lookup, team_abbr, opponent_team_abbr, features, feature_count,
  default_feature_count, feature_version
) VALUES (
  s.game_date, s.game_id, s.player_lookup, s.team_abbr, s.opponent_team_abbr, s.features,
  s.feature_count, s.default_feature_count, s.feature_version
)
WHEN NOT MATCHED BY SOURCE AND t.game_date = @date THEN DELETE
