DROP TABLE stat_cells;
