//! Which database columns hold plaintext. Every other column is ciphertext (`*_enc`:
//! AES-256-GCM-SIV, bound to table, column and row) or a keyed blind index (`*_bidx`:
//! HMAC). A test reads every column of every table from the database itself and fails on
//! one that is neither sealed by name nor declared here, so a new PHI column cannot land
//! in plaintext unnoticed: declaring it here is a decision someone reviews.
//!
//! What stays plaintext: ids and foreign keys, kinds, statuses and flags, event times
//! (lists filter and order by them in SQL), versions, role names, provider directory data
//! (not patient PHI), the audit log's metadata (never PHI values), and hashes.

/// Plaintext columns, by table.
pub const PLAINTEXT: &[(&str, &[&str])] = &[
    ("seaql_migrations", &["version", "applied_at"]),
    (
        "users",
        &[
            "id",
            "password_hash",
            "role",
            "patient_id",
            "provider_id",
            "mfa_enrolled",
            "created_at",
        ],
    ),
    (
        "providers",
        &[
            "id",
            "display_name",
            "created_at",
            "specialty",
            "time_zone",
            "slot_minutes",
            "weekly_hours",
        ],
    ),
    (
        "patients",
        &[
            "id",
            // Legacy columns, emptied by the start-up step (see `EMPTIED`).
            "sex_at_birth",
            "gender_identity",
            "preferred_language",
            "consent_to_contact",
            "version",
            "created_by",
            "created_at",
            "updated_at",
            "archived_at",
        ],
    ),
    (
        "care_team",
        &["patient_id", "provider_id", "assigned_by", "created_at"],
    ),
    (
        "consents",
        &[
            "id",
            "patient_id",
            "grantee_provider_id",
            "scopes",
            "status",
            "granted_by",
            "granted_at",
            "expires_at",
            "withdrawn_at",
            "withdrawn_by",
        ],
    ),
    (
        "allergies",
        &[
            "id",
            "patient_id",
            "severity",
            "status",
            "recorded_by",
            "recorded_at",
            "resolved_by",
            "resolved_at",
        ],
    ),
    (
        "emergency_access",
        &["id", "patient_id", "provider_id", "opened_at", "expires_at"],
    ),
    (
        "idempotency_keys",
        &[
            "actor_id",
            "key",
            "operation",
            "request_hash",
            "resource_id",
            "created_at",
        ],
    ),
    ("audit_head", &["id", "seq", "hash"]),
    (
        "audit_log",
        &[
            "id",
            "seq",
            "occurred_at",
            "actor_id",
            "actor_role",
            "action",
            "resource_type",
            "resource_id",
            "patient_id",
            "outcome",
            "detail",
            "break_glass",
            "ip",
            "user_agent",
            "request_id",
            "prev_hash",
            "hash",
        ],
    ),
    (
        "medical_records",
        &[
            "id",
            "patient_id",
            "kind",
            "status",
            "record_status",
            "sensitivity",
            "version",
            "occurred_at",
            "recorded_at",
            "recorded_by",
            "provider_id",
            "updated_at",
            "updated_by",
        ],
    ),
    (
        "medical_record_versions",
        &[
            "id",
            "record_id",
            "patient_id",
            "version",
            "status",
            "record_status",
            "sensitivity",
            "occurred_at",
            "made_by",
            "made_at",
            "change",
            "changed_by",
            "changed_at",
        ],
    ),
    (
        "record_blobs",
        &["id", "record_id", "patient_id", "created_at"],
    ),
    (
        "record_shares",
        &[
            "id",
            "record_id",
            "patient_id",
            "provider_id",
            "expires_at",
            "created_by",
            "created_at",
            "revoked_at",
            "revoked_by",
        ],
    ),
    (
        "message_threads",
        &[
            "id",
            "patient_id",
            "created_by",
            "created_at",
            "last_message_at",
        ],
    ),
    (
        "thread_participants",
        &[
            "thread_id",
            "user_id",
            "role",
            "joined_at",
            "last_read_seq",
            "archived_at",
        ],
    ),
    (
        "messages",
        &[
            "id",
            "seq",
            "thread_id",
            "patient_id",
            "sender_id",
            "sender_role",
            "sent_at",
            "retracted_at",
        ],
    ),
    (
        "message_attachments",
        &["message_id", "record_id", "position"],
    ),
    (
        "billing_statements",
        &[
            "id",
            "patient_id",
            "issued_on",
            "due_on",
            "currency",
            "total_cents",
            "status",
            "created_by",
            "created_at",
        ],
    ),
    // Amounts and kinds: the line items (what was done) are sealed with the statement.
    (
        "ledger_entries",
        &[
            "id",
            "statement_id",
            "patient_id",
            "kind",
            "amount_cents",
            "payment_id",
            "created_by",
            "created_at",
        ],
    ),
    (
        "payments",
        &[
            "id",
            "statement_id",
            "patient_id",
            "actor_id",
            "amount_cents",
            "status",
            "gateway_ref",
            "refunded_cents",
            "created_at",
            "settled_at",
        ],
    ),
    // The member and group numbers are sealed; payer and plan name are not identifiers.
    (
        "coverages",
        &[
            "id",
            "patient_id",
            "payer",
            "plan_name",
            "relationship",
            "effective_from",
            "effective_to",
            "created_by",
            "created_at",
        ],
    ),
    // The sandbox gateway's own side: payment ids as keys, amounts, outcomes.
    (
        "sandbox_charges",
        &["key", "amount_cents", "outcome", "reference", "created_at"],
    ),
    (
        "appointments",
        &[
            "id",
            "patient_id",
            "provider_id",
            "starts_at",
            "ends_at",
            "duration_minutes",
            "status",
            "version",
            "created_by",
            "created_at",
            "updated_at",
            "updated_by",
        ],
    ),
    // A provider's own time off: not patient PHI (bounded text, never logged).
    (
        "provider_time_off",
        &[
            "id",
            "provider_id",
            "starts_at",
            "ends_at",
            "reason",
            "created_by",
            "created_at",
        ],
    ),
    (
        "correction_requests",
        &[
            "id",
            "record_id",
            "patient_id",
            "requested_by",
            "requested_at",
            "status",
            "responded_by",
            "responded_at",
            "amended_version",
            "disagreed_at",
        ],
    ),
];

/// Legacy plaintext columns that must be empty in every row (their values moved to sealed
/// columns; a later migration drops them).
pub const EMPTIED: &[(&str, &str)] = &[
    ("patients", "sex_at_birth"),
    ("patients", "gender_identity"),
];

/// Whether `table.column` may hold plaintext (declared, or sealed/indexed by its name).
pub fn allowed(table: &str, column: &str) -> bool {
    column.ends_with("_enc")
        || column.ends_with("_bidx")
        || PLAINTEXT
            .iter()
            .any(|(t, cols)| *t == table && cols.contains(&column))
}
