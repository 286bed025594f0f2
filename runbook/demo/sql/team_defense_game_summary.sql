-- Phase 3: one row per team per game: what the opponent's offense did against this team.
MERGE `nba-demo.nba_analytics.team_defense_game_summary` AS t
USING (
  SELECT
    own.game_id,
    own.game_date,
    own.season_year,
    own.team_abbr,
    own.opponent_team_abbr,
    own.home_game,
    opp.points AS points_allowed,
    opp.fg_attempts AS opp_fg_attempts,
    ROUND(SAFE_DIVIDE(opp.fg_made, opp.fg_attempts), 4) AS opp_fg_pct,
    ROUND(SAFE_DIVIDE(opp.three_pt_made, opp.three_pt_attempts), 4) AS opp_three_pt_pct,
    opp.turnovers AS forced_turnovers,
    opp.possessions AS opp_possessions,
    opp.offensive_rating AS defensive_rating
  FROM `nba-demo.nba_analytics.team_offense_game_summary` AS own
  JOIN `nba-demo.nba_analytics.team_offense_game_summary` AS opp
    ON opp.game_id = own.game_id AND opp.team_abbr = own.opponent_team_abbr
  WHERE own.game_date = @date AND opp.game_date = @date
) AS s
ON t.game_id = s.game_id AND t.team_abbr = s.team_abbr
WHEN MATCHED THEN UPDATE SET
  game_date = s.game_date, season_year = s.season_year, opponent_team_abbr = s.opponent_team_abbr,
  home_game = s.home_game, points_allowed = s.points_allowed, opp_fg_attempts = s.opp_fg_attempts,
  opp_fg_pct = s.opp_fg_pct, opp_three_pt_pct = s.opp_three_pt_pct, forced_turnovers = s.forced_turnovers,
  opp_possessions = s.opp_possessions, defensive_rating = s.defensive_rating
WHEN NOT MATCHED THEN INSERT (
  game_id, game_date, season_year, team_abbr, opponent_team_abbr, home_game, points_allowed,
  opp_fg_attempts, opp_fg_pct, opp_three_pt_pct, forced_turnovers, opp_possessions, defensive_rating
) VALUES (
  s.game_id, s.game_date, s.season_year, s.team_abbr, s.opponent_team_abbr, s.home_game, s.points_allowed,
  s.opp_fg_attempts, s.opp_fg_pct, s.opp_three_pt_pct, s.forced_turnovers, s.opp_possessions,
  s.defensive_rating
)
WHEN NOT MATCHED BY SOURCE AND t.game_date = @date THEN DELETE
