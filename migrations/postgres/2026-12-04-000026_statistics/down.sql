DROP TABLE stat_facts;
DROP TABLE stat_residents;
DROP TABLE stat_population;
