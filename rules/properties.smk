# properties stage: filled in by its issue
