//! Table definitions shared by both backends (see `migrations/sqlite` and `migrations/postgres`).

diesel::table! {
    resources (res_type, res_id) {
        res_type -> Text,
        res_id -> Text,
        version_id -> BigInt,
        last_updated -> BigInt,
        deleted -> Bool,
        content -> Text,
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
