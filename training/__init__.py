"""Training over dataset releases: torch datasets, augmentation recipes, models, train loop, prediction."""
