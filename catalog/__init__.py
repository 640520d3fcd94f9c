"""Domain model of a personnel file (档案): categories, ID numbers, the catalog manifest."""
