"""Tests of the credits resource."""
