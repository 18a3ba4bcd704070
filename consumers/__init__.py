"""Projections of the log into queryable views, and the queries compliance staff run."""
