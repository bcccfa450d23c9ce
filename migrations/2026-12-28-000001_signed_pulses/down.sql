DROP TABLE pulse_signatures;
