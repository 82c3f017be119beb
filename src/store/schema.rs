//! Table definitions shared by both backends (see `migrations/sqlite` and `migrations/postgres`).

diesel::table! {
    resources (res_type, res_id) {
        res_type -> Text,
        res_id -> Text,
        version_id -> BigInt,
        last_updated -> BigInt,
        deleted -> Bool,
        content -> Text,
        resident -> Nullable<Text>,
        custodian -> Nullable<Text>,
    }
}

diesel::table! {
    resource_versions (seq) {
        seq -> BigInt,
        res_type -> Text,
        res_id -> Text,
        version_id -> BigInt,
        last_updated -> BigInt,
        deleted -> Bool,
        method -> Text,
        content -> Text,
    }
}

diesel::table! {
    search_token (res_type, param, code, system, res_id) {
        res_type -> Text,
        param -> Text,
        code -> Text,
        system -> Text,
        res_id -> Text,
    }
}

diesel::allow_tables_to_appear_in_same_query!(resources, resource_versions, search_token);

// The search index tables have no primary key in SQL (a resource may contribute the same row
// shape several times before de-duplication); diesel needs one declared, so all columns are.

diesel::table! {
    search_string (res_type, param, value, exact, res_id) {
        res_type -> Text,
        param -> Text,
        value -> Text,
        exact -> Text,
        res_id -> Text,
    }
}

diesel::table! {
    search_date (res_type, param, low, high, res_id) {
        res_type -> Text,
        param -> Text,
        low -> BigInt,
        high -> BigInt,
        res_id -> Text,
    }
}

diesel::table! {
    search_reference (res_type, param, target_type, target_id, url, res_id) {
        res_type -> Text,
        param -> Text,
        target_type -> Text,
        target_id -> Text,
        url -> Text,
        res_id -> Text,
    }
}

diesel::table! {
    search_number (res_type, param, value, res_id) {
        res_type -> Text,
        param -> Text,
        value -> Double,
        res_id -> Text,
    }
}

diesel::table! {
    search_quantity (res_type, param, value, system, code, res_id) {
        res_type -> Text,
        param -> Text,
        value -> Double,
        system -> Text,
        code -> Text,
        res_id -> Text,
    }
}

diesel::table! {
    search_uri (res_type, param, uri, res_id) {
        res_type -> Text,
        param -> Text,
        uri -> Text,
        res_id -> Text,
    }
}

diesel::table! {
    search_composite (res_type, param, system1, code1, res_id) {
        res_type -> Text,
        param -> Text,
        system1 -> Text,
        code1 -> Text,
        system -> Nullable<Text>,
        code -> Nullable<Text>,
        value -> Nullable<Double>,
        low -> Nullable<BigInt>,
        high -> Nullable<BigInt>,
        text2 -> Nullable<Text>,
        res_id -> Text,
    }
}

diesel::table! {
    search_text (res_type, param, res_id) {
        res_type -> Text,
        param -> Text,
        content -> Text,
        res_id -> Text,
    }
}

diesel::table! {
    awaiting_residents (awaited, res_type, res_id) {
        awaited -> Text,
        res_type -> Text,
        res_id -> Text,
    }
}

diesel::table! {
    match_keys (res_type, criteria) {
        res_type -> Text,
        criteria -> Text,
        res_id -> Text,
    }
}

diesel::table! {
    resident_reviews (source_id, golden_id) {
        source_id -> Text,
        golden_id -> Text,
        score -> Double,
        created -> BigInt,
    }
}

diesel::table! {
    audit_events (id) {
        id -> BigInt,
        recorded -> BigInt,
        resident -> Nullable<Text>,
        flagged -> Bool,
        content -> Text,
        txid -> BigInt,
    }
}

diesel::table! {
    audit_seals (chain_seq) {
        chain_seq -> BigInt,
        event_id -> BigInt,
        hash -> Text,
    }
}

diesel::table! {
    audit_chain (id) {
        id -> Integer,
        start_seq -> BigInt,
        start_prev -> Text,
        sealed_txid -> BigInt,
        sealed_id -> BigInt,
    }
}

diesel::joinable!(audit_seals -> audit_events (event_id));
diesel::allow_tables_to_appear_in_same_query!(audit_events, audit_seals);

diesel::table! {
    protect_keys (id) {
        id -> Text,
        added -> BigInt,
    }
}

diesel::table! {
    break_glass (sub, resident) {
        sub -> Text,
        resident -> Text,
        reason -> Text,
        granted -> BigInt,
        expires -> BigInt,
    }
}

diesel::table! {
    sensitive_types (res_type) {
        res_type -> Text,
    }
}

diesel::table! {
    audit_log_copied (log) {
        log -> Text,
        copied -> BigInt,
    }
}

diesel::table! {
    instance (id) {
        id -> Integer,
        token -> Text,
    }
}

diesel::table! {
    slot_places (slot_id) {
        slot_id -> Text,
        institution -> Text,
        start_ms -> BigInt,
        end_ms -> BigInt,
        capacity -> Integer,
        reserve -> Integer,
        reserve_until -> Nullable<BigInt>,
        release_at -> Nullable<BigInt>,
        open -> Bool,
        taken_public -> Integer,
        taken_referral -> Integer,
    }
}

diesel::table! {
    slot_claims (appointment_id) {
        appointment_id -> Text,
        slot_id -> Text,
        resident -> Text,
        referral -> Bool,
        state -> Text,
        hold_until -> Nullable<BigInt>,
        day -> Text,
        specialty -> Text,
        start_ms -> BigInt,
        referrer -> Nullable<Text>,
    }
}

diesel::table! {
    workflow_tasks (task_id) {
        task_id -> Text,
        request_id -> Text,
        kind -> Text,
        resident -> Text,
        requester -> Text,
        owner -> Text,
        owner_practitioner -> Nullable<Text>,
        status -> Text,
        deadline -> Nullable<BigInt>,
        overdue -> Bool,
        opened -> BigInt,
        closes -> Nullable<BigInt>,
    }
}

diesel::table! {
    subscriptions (id) {
        id -> Text,
        res_type -> Text,
        criteria -> Text,
        endpoint -> Text,
        headers -> Text,
        payload -> Nullable<Text>,
        subscriber -> Text,
        active -> Bool,
        failures -> Integer,
        retry_at -> BigInt,
        error -> Nullable<Text>,
    }
}

diesel::table! {
    notifications (seq) {
        seq -> BigInt,
        subscription -> Text,
        res_type -> Text,
        res_id -> Text,
        version_id -> BigInt,
        created -> BigInt,
        lease_until -> BigInt,
        lease_owner -> BigInt,
    }
}

diesel::allow_tables_to_appear_in_same_query!(notifications, subscriptions);

diesel::table! {
    stat_population (area, year, sex, age_from) {
        area -> Text,
        year -> Integer,
        sex -> Text,
        age_from -> Integer,
        age_to -> Integer,
        population -> BigInt,
    }
}

diesel::table! {
    stat_residents (resident) {
        resident -> Text,
        area -> Nullable<Text>,
        sex -> Nullable<Text>,
        birth -> Nullable<Integer>,
        org -> Nullable<Text>,
        since -> Nullable<BigInt>,
        card -> Integer,
        golden -> Integer,
    }
}

diesel::table! {
    stat_facts (res_type, res_id, kind) {
        res_type -> Text,
        res_id -> Text,
        kind -> Text,
        resident -> Nullable<Text>,
        org -> Nullable<Text>,
        at -> BigInt,
        until_at -> Nullable<BigInt>,
        value -> Nullable<Double>,
        flag -> Integer,
    }
}

diesel::table! {
    stat_cells (ind, period, area, sex, age, org, flag) {
        ind -> Text,
        period -> Integer,
        area -> Text,
        sex -> Text,
        age -> Integer,
        org -> Text,
        flag -> Integer,
        n -> BigInt,
        total -> Double,
    }
}

diesel::allow_tables_to_appear_in_same_query!(stat_facts, stat_residents);
