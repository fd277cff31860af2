"""Tests of the Chat API."""
