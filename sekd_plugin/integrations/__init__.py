"""Bridges to other toolkits (hloc)."""
