"""Dataset releases: import from the submodules (splits, recipes, versions, integrity, summaries, build, card)."""
