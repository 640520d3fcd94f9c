"""Transfer of a personnel file to a receiving province: the record, its signature."""
