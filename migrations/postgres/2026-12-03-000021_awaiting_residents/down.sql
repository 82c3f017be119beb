DROP TABLE awaiting_residents;
