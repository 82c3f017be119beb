DROP TABLE resident_reviews;
