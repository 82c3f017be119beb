-- A referral booking (转诊预约) records the primary-care institution that referred the resident:
-- it may change the booking as the resident may, and the referral statistics count by it.
ALTER TABLE slot_claims ADD COLUMN referrer TEXT COLLATE "C";
