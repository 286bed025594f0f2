-- Phase 3: one row per team per game from the team box-score feed (which misses some games).
MERGE `nba-demo.nba_analytics.team_offense_game_summary` AS t
USING (
  SELECT
    game_id,
    game_date,
    season_year,
    team_abbr,
    opponent_team_abbr,
    is_home AS home_game,
    minutes AS team_minutes,
    points,
    field_goals_made AS fg_made,
    field_goals_attempted AS fg_attempts,
    three_pointers_made AS three_pt_made,
    three_pointers_attempted AS three_pt_attempts,
    free_throws_made AS ft_made,
    free_throws_attempted AS ft_attempts,
    offensive_rebounds,
    assists,
    turnovers,
    ROUND(field_goals_attempted + 0.44 * free_throws_attempted - offensive_rebounds + turnovers, 2) AS possessions,
    ROUND(SAFE_DIVIDE(
      (field_goals_attempted + 0.44 * free_throws_attempted - offensive_rebounds + turnovers) * 240,
      minutes), 2) AS pace,
    ROUND(SAFE_DIVIDE(
      100 * points,
      field_goals_attempted + 0.44 * free_throws_attempted - offensive_rebounds + turnovers), 2) AS offensive_rating
  FROM `nba-demo.nba_raw.nbac_team_boxscore`
  WHERE game_date = @date
) AS s
ON t.game_id = s.game_id AND t.team_abbr = s.team_abbr
WHEN MATCHED THEN UPDATE SET
  game_date = s.game_date, season_year = s.season_year, opponent_team_abbr = s.opponent_team_abbr,
  home_game = s.home_game, team_minutes = s.team_minutes, points = s.points, fg_made = s.fg_made,
  fg_attempts = s.fg_attempts, three_pt_made = s.three_pt_made, three_pt_attempts = s.three_pt_attempts,
  ft_made = s.ft_made, ft_attempts = s.ft_attempts, offensive_rebounds = s.offensive_rebounds,
  assists = s.assists, turnovers = s.turnovers, possessions = s.possessions, pace = s.pace,
  offensive_rating = s.offensive_rating
WHEN NOT MATCHED THEN INSERT (
  game_id, game_date, season_year, team_abbr, opponent_team_abbr, home_game, team_minutes, points,
  fg_made, fg_attempts, three_pt_made, three_pt_attempts, ft_made, ft_attempts, offensive_rebounds,
  assists, turnovers, possessions, pace, offensive_rating
) VALUES (
  s.game_id, s.game_date, s.season_year, s.team_abbr, s.opponent_team_abbr, s.home_game, s.team_minutes,
  s.points, s.fg_made, s.fg_attempts, s.three_pt_made, s.three_pt_attempts, s.ft_made, s.ft_attempts,
  s.offensive_rebounds, s.assists, s.turnovers, s.possessions, s.pace, s.offensive_rating
)
WHEN NOT MATCHED BY SOURCE AND t.game_date = @date THEN DELETE
