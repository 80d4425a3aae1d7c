"""Application services: load, apply the domain, save in one transaction."""
