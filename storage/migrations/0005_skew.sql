-- Skew estimated at intake (degrees, counter-clockwise positive), for the scanning operator.
ALTER TABLE batch_files ADD COLUMN skew_degrees real;
