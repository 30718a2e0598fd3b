"""Widgets: layout and user intent (signals) only; controllers do the wiring."""
