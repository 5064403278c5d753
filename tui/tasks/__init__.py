"""UI-free deploy engine: transport, profiles, steps, state.

Nothing in this package imports Textual; the TUI and the headless CLI both
drive it through events and decision callbacks.
"""
