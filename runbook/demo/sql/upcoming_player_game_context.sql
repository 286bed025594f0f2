-- Phase 3: one row per rostered player of each team that plays on @date, with the player's and the
-- teams' form over this season's games BEFORE @date. This is the step the seeds fixed:
-- avg_usage_rate_last_7_games comes from player_game_summary, where usage_rate lives (the raw box
-- scores have none). It reads earlier dates, so it runs with depends_on_past.
MERGE `nba-demo.nba_analytics.upcoming_player_game_context` AS t
USING (
  WITH games AS (
    SELECT game_id, season_year, home_team_abbr AS team_abbr, away_team_abbr AS opponent_team_abbr,
      TRUE AS home_game
    FROM `nba-demo.nba_raw.schedule`
    WHERE game_date = @date
    UNION ALL
    SELECT game_id, season_year, away_team_abbr, home_team_abbr, FALSE
    FROM `nba-demo.nba_raw.schedule`
    WHERE game_date = @date
  ),
  players AS (
    SELECT games.*, r.player_lookup, r.player_full_name
    FROM games
    JOIN `nba-demo.nba_raw.player_rosters` AS r
      ON r.season_year = games.season_year AND r.team_abbr = games.team_abbr
  ),
  -- A season is shorter than 120 days and seasons are more than 120 days apart.
  history AS (
    SELECT
      pgs.player_lookup,
      pgs.game_date,
      pgs.is_dnp,
      pgs.points,
      pgs.minutes_played,
      pgs.usage_rate,
      ROW_NUMBER() OVER (PARTITION BY pgs.player_lookup ORDER BY pgs.game_date DESC) AS games_ago,
      -- among the games the player played, how recent (one sort serves both windows)
      COUNTIF(NOT pgs.is_dnp) OVER (
        PARTITION BY pgs.player_lookup ORDER BY pgs.game_date DESC ROWS UNBOUNDED PRECEDING) AS played_ago
    FROM `nba-demo.nba_analytics.player_game_summary` AS pgs
    JOIN players ON players.player_lookup = pgs.player_lookup AND players.season_year = pgs.season_year
    WHERE pgs.game_date >= DATE_SUB(@date, INTERVAL 120 DAY) AND pgs.game_date < @date
  ),
  form AS (
    SELECT
      player_lookup,
      MAX(game_date) AS last_game_date,
      COUNTIF(NOT is_dnp) AS games_played_season,
      AVG(IF(NOT is_dnp AND played_ago <= 5, points, NULL)) AS avg_points_last_5,
      AVG(IF(NOT is_dnp AND played_ago <= 10, points, NULL)) AS avg_points_last_10,
      STDDEV_SAMP(IF(NOT is_dnp AND played_ago <= 10, points, NULL)) AS points_std_last_10,
      AVG(IF(NOT is_dnp, points, NULL)) AS season_avg_points,
      AVG(IF(NOT is_dnp AND played_ago <= 10, minutes_played, NULL)) AS avg_minutes_last_10,
      AVG(IF(games_ago <= 7, usage_rate, NULL)) AS avg_usage_rate_last_7_games
    FROM history
    GROUP BY player_lookup
  ),
  team_pace AS (
    SELECT team_abbr, AVG(pace) AS pace_last_10
    FROM (
      SELECT o.team_abbr, o.pace,
        ROW_NUMBER() OVER (PARTITION BY o.team_abbr ORDER BY o.game_date DESC) AS games_ago
      FROM `nba-demo.nba_analytics.team_offense_game_summary` AS o
      WHERE o.game_date >= DATE_SUB(@date, INTERVAL 60 DAY) AND o.game_date < @date
        AND o.season_year IN (SELECT season_year FROM games)
    )
    WHERE games_ago <= 10
    GROUP BY team_abbr
  ),
  team_defense AS (
    SELECT team_abbr, AVG(defensive_rating) AS def_rating_last_10
    FROM (
      SELECT d.team_abbr, d.defensive_rating,
        ROW_NUMBER() OVER (PARTITION BY d.team_abbr ORDER BY d.game_date DESC) AS games_ago
      FROM `nba-demo.nba_analytics.team_defense_game_summary` AS d
      WHERE d.game_date >= DATE_SUB(@date, INTERVAL 60 DAY) AND d.game_date < @date
        AND d.season_year IN (SELECT season_year FROM games)
    )
    WHERE games_ago <= 10
    GROUP BY team_abbr
  )
  SELECT
    @date AS game_date,
    p.game_id,
    p.season_year,
    p.player_lookup,
    p.player_full_name,
    p.team_abbr,
    p.opponent_team_abbr,
    p.home_game,
    DATE_DIFF(@date, form.last_game_date, DAY) AS days_rest,
    COALESCE(DATE_DIFF(@date, form.last_game_date, DAY) = 1, FALSE) AS back_to_back,
    COALESCE(form.games_played_season, 0) AS games_played_season,
    ROUND(form.avg_points_last_5, 2) AS avg_points_last_5,
    ROUND(form.avg_points_last_10, 2) AS avg_points_last_10,
    ROUND(form.points_std_last_10, 2) AS points_std_last_10,
    ROUND(form.season_avg_points, 2) AS season_avg_points,
    ROUND(form.avg_minutes_last_10, 2) AS avg_minutes_last_10,
    ROUND(form.avg_usage_rate_last_7_games, 2) AS avg_usage_rate_last_7_games,
    ROUND(own_pace.pace_last_10, 2) AS team_pace_last_10,
    ROUND(opp_pace.pace_last_10, 2) AS opponent_pace_last_10,
    ROUND(opp_defense.def_rating_last_10, 2) AS opponent_def_rating_last_10
  FROM players AS p
  LEFT JOIN form ON form.player_lookup = p.player_lookup
  LEFT JOIN team_pace AS own_pace ON own_pace.team_abbr = p.team_abbr
  LEFT JOIN team_pace AS opp_pace ON opp_pace.team_abbr = p.opponent_team_abbr
  LEFT JOIN team_defense AS opp_defense ON opp_defense.team_abbr = p.opponent_team_abbr
) AS s
ON t.game_date = s.game_date AND t.player_lookup = s.player_lookup
WHEN MATCHED THEN UPDATE SET
  game_id = s.game_id, season_year = s.season_year, player_full_name = s.player_full_name,
  team_abbr = s.team_abbr, opponent_team_abbr = s.opponent_team_abbr, home_game = s.home_game,
  days_rest = s.days_rest, back_to_back = s.back_to_back, games_played_season = s.games_played_season,
  avg_points_last_5 = s.avg_points_last_5, avg_points_last_10 = s.avg_points_last_10,
  points_std_last_10 = s.points_std_last_10, season_avg_points = s.season_avg_points,
  avg_minutes_last_10 = s.avg_minutes_last_10, avg_usage_rate_last_7_games = s.avg_usage_rate_last_7_games,
  team_pace_last_10 = s.team_pace_last_10, opponent_pace_last_10 = s.opponent_pace_last_10,
  opponent_def_rating_last_10 = s.opponent_def_rating_last_10
WHEN NOT MATCHED THEN INSERT (
  game_date, game_id, season_year, player_lookup, player_full_name, team_abbr, opponent_team_abbr,
  home_game, days_rest, back_to_back, games_played_season, avg_points_last_5, avg_points_last_10,
  points_std_last_10, season_avg_points, avg_minutes_last_10, avg_usage_rate_last_7_games,
  team_pace_last_10, opponent_pace_last_10, opponent_def_rating_last_10
) VALUES (
  s.game_date, s.game_id, s.season_year, s.player_lookup, s.player_full_name, s.team_abbr,
  s.opponent_team_abbr, s.home_game, s.days_rest, s.back_to_back, s.games_played_season,
  s.avg_points_last_5, s.avg_points_last_10, s.points_std_last_10, s.season_avg_points,
  s.avg_minutes_last_10, s.avg_usage_rate_last_7_games, s.team_pace_last_10, s.opponent_pace_last_10,
  s.opponent_def_rating_last_10
)
WHEN NOT MATCHED BY SOURCE AND t.game_date = @date THEN DELETE
