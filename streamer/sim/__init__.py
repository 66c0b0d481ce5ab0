"""Test portfolios with known answers: realistic usage histories and the truth behind them.

``python -m streamer.sim.portfolio`` (or ``python -m streamer.sim``) writes a history of usage
events for a b2b or a consumer portfolio and a truth file saying, per account, its archetype, when
it started, whether and when it cancelled, and when the behaviour before the cancellation began.
:func:`load_truth` reads the truth back; :func:`streamer.sim.portfolio.generate_portfolio` is the
pure generator behind the command.
"""

from streamer.sim.truth import CalendarEntry, Episode, PortfolioParams, Scope, Truth, TruthAccount, load_truth

__all__ = ["CalendarEntry", "Episode", "PortfolioParams", "Scope", "Truth", "TruthAccount", "load_truth"]
