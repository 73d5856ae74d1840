//! What guards every field of the schema: the one table the pipeline enforces on each field
//! it resolves (`graphql::field_guards`) and a test checks against the built schema. A
//! field missing here is refused at run time and fails the test; a stale entry fails it too.
//!
//! Root fields carry their role rule here (there are no role attributes on resolvers).
//! Fields of PHI-carrying types are `Capability`: their objects exist only under an
//! `access` capability, checked when the object was made; fields that ask `access` again
//! (clinical categories, SSN digits) are `Access`. `Public` marks the short, reviewed list
//! of values without PHI that anyone may see.
use std::sync::LazyLock;

use crate::graphql::field_guards::{FieldGuards, Guard, TypeGuards};
use crate::graphql::guards::{ADMIN, PATIENT_DATA_ROLES, STAFF};
use crate::identity::Role;

use Guard::*;

const PROVIDER_ONLY: &[Role] = &[Role::Provider];
const PATIENT_ONLY: &[Role] = &[Role::Patient];
const PATIENT_OR_ADMIN: &[Role] = &[Role::Patient, Role::Admin];

const DEMOGRAPHICS: Guard = Capability("PatientScope<Demographics>");
const OWNER: Guard = Capability("PatientScope<OwnerOnly>");
const RECORD: Guard = Capability("records::scope::ReadGrant (access::clinical_grant)");
const HISTORY: Guard = Access("access::owner_or_admin_scope");
const SHARE: Guard = Capability("access::shares::ShareGrant (a live share)");
const CORRECTION: Guard = Capability(
    "records::scope::ReadGrant (the record's) or PatientScope<OwnerOnly> (the patient's requests)",
);
const BILLING: Guard = Capability("access::billing::BillingGrant");
const THREAD: Guard = Capability("access::messaging::ThreadGrant");
const SIGNED_IN_VIEWER: Guard = Capability("the signed-in viewer's own session");
const SCHEDULE: Guard = Capability(
    "access::schedule::ScheduleGrant (a patient's appointments) or CalendarGrant (a provider's)",
);

/// Every type's guards.
pub static TABLE: &[TypeGuards] = &[
    TypeGuards {
        type_name: "BillingStatement",
        all: Some(BILLING),
        fields: &[],
    },
    TypeGuards {
        type_name: "BillingStatementConnection",
        all: Some(BILLING),
        fields: &[],
    },
    TypeGuards {
        type_name: "BillingStatementEdge",
        all: Some(BILLING),
        fields: &[],
    },
    TypeGuards {
        type_name: "LineItem",
        all: Some(BILLING),
        fields: &[],
    },
    TypeGuards {
        type_name: "Payment",
        all: Some(BILLING),
        fields: &[],
    },
    TypeGuards {
        type_name: "Coverage",
        all: Some(BILLING),
        fields: &[],
    },
    TypeGuards {
        type_name: "CoverageEligibility",
        all: Some(BILLING),
        fields: &[],
    },
    TypeGuards {
        type_name: "MessageThread",
        all: Some(THREAD),
        fields: &[],
    },
    TypeGuards {
        type_name: "MessageThreadConnection",
        all: Some(THREAD),
        fields: &[],
    },
    TypeGuards {
        type_name: "MessageThreadEdge",
        all: Some(THREAD),
        fields: &[],
    },
    TypeGuards {
        type_name: "Message",
        all: Some(THREAD),
        fields: &[],
    },
    TypeGuards {
        type_name: "MessageConnection",
        all: Some(THREAD),
        fields: &[],
    },
    TypeGuards {
        type_name: "MessageEdge",
        all: Some(THREAD),
        fields: &[],
    },
    TypeGuards {
        type_name: "Participant",
        all: Some(THREAD),
        fields: &[],
    },
    TypeGuards {
        type_name: "MessageAttachment",
        all: Some(THREAD),
        // The document itself is read under its own grant (records::scope::one).
        fields: &[
            (
                "withheld",
                Access("records::scope::one (access::clinical_grant)"),
            ),
            (
                "document",
                Access("records::scope::one (access::clinical_grant)"),
            ),
        ],
    },
    TypeGuards {
        type_name: "RecordShare",
        all: Some(OWNER),
        fields: &[],
    },
    TypeGuards {
        type_name: "CorrectionRequest",
        all: Some(CORRECTION),
        fields: &[],
    },
    TypeGuards {
        type_name: "SharedRecord",
        all: Some(SHARE),
        fields: &[],
    },
    TypeGuards {
        type_name: "SharedRecordConnection",
        all: Some(SHARE),
        fields: &[],
    },
    TypeGuards {
        type_name: "SharedRecordEdge",
        all: Some(SHARE),
        fields: &[],
    },
    TypeGuards {
        type_name: "PatientIdentity",
        all: Some(Capability("PatientScope<Identity> (from a live share)")),
        fields: &[],
    },
    TypeGuards {
        type_name: "Query",
        all: None,
        fields: &[
            ("me", Restricted),
            ("patient", Roles(PATIENT_DATA_ROLES)),
            ("patients", Roles(PATIENT_DATA_ROLES)),
            ("record", Roles(PATIENT_DATA_ROLES)),
            ("consents", Roles(PATIENT_DATA_ROLES)),
            ("accessHistory", Roles(PATIENT_DATA_ROLES)),
            ("sharedWithMe", Roles(PROVIDER_ONLY)),
            // Providers and free/busy are not PHI; availability_grant decides who may ask.
            ("providers", SignedIn),
            ("providerAvailability", SignedIn),
            ("appointment", Roles(PATIENT_DATA_ROLES)),
            ("inbox", Roles(PATIENT_DATA_ROLES)),
            ("thread", Roles(PATIENT_DATA_ROLES)),
            ("billingStatements", Roles(PATIENT_DATA_ROLES)),
            ("statement", Roles(PATIENT_DATA_ROLES)),
        ],
    },
    TypeGuards {
        type_name: "Mutation",
        all: None,
        fields: &[
            ("login", Public),
            ("verifyMfa", Public),
            ("refreshSession", Public),
            ("logout", Restricted),
            ("enrollMfa", Restricted),
            ("confirmMfa", Restricted),
            ("createPatient", Roles(STAFF)),
            ("updatePatient", Roles(PATIENT_DATA_ROLES)),
            ("archivePatient", Roles(ADMIN)),
            ("restorePatient", Roles(ADMIN)),
            ("grantConsent", Roles(PATIENT_DATA_ROLES)),
            ("withdrawConsent", Roles(PATIENT_DATA_ROLES)),
            ("recordLabResult", Roles(STAFF)),
            ("addVisitNote", Roles(STAFF)),
            ("prescribeMedication", Roles(STAFF)),
            ("stopMedication", Roles(STAFF)),
            ("recordAllergy", Roles(STAFF)),
            ("resolveAllergy", Roles(STAFF)),
            ("recordImmunization", Roles(STAFF)),
            ("addDocument", Roles(STAFF)),
            ("amendRecord", Roles(STAFF)),
            ("markEnteredInError", Roles(STAFF)),
            ("assignCareTeam", Roles(ADMIN)),
            ("removeCareTeam", Roles(ADMIN)),
            ("openEmergencyAccess", Roles(PROVIDER_ONLY)),
            ("setSchedule", Roles(STAFF)),
            ("addTimeOff", Roles(STAFF)),
            ("scheduleAppointment", Roles(PATIENT_DATA_ROLES)),
            ("rescheduleAppointment", Roles(PATIENT_DATA_ROLES)),
            ("cancelAppointment", Roles(PATIENT_DATA_ROLES)),
            ("completeAppointment", Roles(STAFF)),
            ("markNoShow", Roles(STAFF)),
            ("shareRecord", Roles(PATIENT_ONLY)),
            ("revokeShare", Roles(PATIENT_OR_ADMIN)),
            ("requestCorrection", Roles(PATIENT_ONLY)),
            // The record's author or ADMIN, decided in records::corrections.
            ("respondToCorrection", Roles(STAFF)),
            ("fileDisagreement", Roles(PATIENT_ONLY)),
            ("startThread", Roles(PATIENT_DATA_ROLES)),
            ("sendMessage", Roles(PATIENT_DATA_ROLES)),
            ("markThreadRead", Roles(PATIENT_DATA_ROLES)),
            ("archiveThread", Roles(PATIENT_DATA_ROLES)),
            ("retractMessage", Roles(PATIENT_DATA_ROLES)),
            ("makePayment", Roles(PATIENT_OR_ADMIN)),
            ("issueStatement", Roles(ADMIN)),
            ("voidStatement", Roles(ADMIN)),
            ("refundPayment", Roles(ADMIN)),
            ("addCoverage", Roles(PATIENT_OR_ADMIN)),
            ("verifyCoverage", Roles(PATIENT_OR_ADMIN)),
        ],
    },
    // Each event is loaded at delivery through the same access decision as a query.
    TypeGuards {
        type_name: "Subscription",
        all: None,
        fields: &[
            ("messageReceived", Roles(PATIENT_DATA_ROLES)),
            ("unreadCountChanged", SignedIn),
            ("appointmentChanged", Roles(PATIENT_DATA_ROLES)),
        ],
    },
    // Sign-in results: the caller's own tokens, no PHI.
    TypeGuards {
        type_name: "LoginPayload",
        all: Some(Public),
        fields: &[],
    },
    TypeGuards {
        type_name: "MfaEnrollment",
        all: Some(Restricted),
        fields: &[],
    },
    TypeGuards {
        type_name: "Me",
        all: Some(Restricted),
        // Counted under access::messaging::readable_threads; not while MFA enrolment is due.
        fields: &[("unreadCount", SignedIn)],
    },
    // Paging carries opaque cursors and flags only.
    TypeGuards {
        type_name: "PageInfo",
        all: Some(Public),
        fields: &[],
    },
    TypeGuards {
        type_name: "Patient",
        all: Some(DEMOGRAPHICS),
        fields: &[
            ("ssnLast4", Access("access::ssn_digits")),
            ("records", Access("access::clinical_grant")),
            ("labResults", Access("access::clinical_grant")),
            ("visitNotes", Access("access::clinical_grant")),
            ("immunizations", Access("access::clinical_grant")),
            ("documents", Access("access::clinical_grant")),
            ("medications", Access("access::clinical_grant")),
            ("allergies", Access("access::clinical_grant")),
            (
                "appointments",
                Access("access::schedule::appointments_grant"),
            ),
            (
                "fhirExport",
                Access("access::clinical_grant, access::schedule::appointments_grant"),
            ),
            ("recordShares", Access("access::owner_or_admin_scope")),
            ("coverages", Access("access::billing::billing_grant")),
            ("correctionRequests", Access("access::owner_or_admin_scope")),
        ],
    },
    TypeGuards {
        type_name: "Address",
        all: Some(DEMOGRAPHICS),
        fields: &[],
    },
    TypeGuards {
        type_name: "EmergencyContact",
        all: Some(DEMOGRAPHICS),
        fields: &[],
    },
    TypeGuards {
        type_name: "PatientConnection",
        all: Some(Capability("access::visible_patients (the page's rows)")),
        fields: &[],
    },
    TypeGuards {
        type_name: "PatientEdge",
        all: Some(DEMOGRAPHICS),
        fields: &[],
    },
    TypeGuards {
        type_name: "Consent",
        all: Some(OWNER),
        fields: &[],
    },
    TypeGuards {
        type_name: "AccessEntry",
        all: Some(OWNER),
        fields: &[],
    },
    TypeGuards {
        type_name: "AccessEntryEdge",
        all: Some(OWNER),
        fields: &[],
    },
    TypeGuards {
        type_name: "AccessHistoryConnection",
        all: Some(OWNER),
        fields: &[],
    },
    TypeGuards {
        type_name: "EmergencyAccess",
        all: Some(SIGNED_IN_VIEWER),
        fields: &[],
    },
    TypeGuards {
        type_name: "MedicalRecord",
        all: Some(RECORD),
        fields: &[("accessHistory", HISTORY)],
    },
    TypeGuards {
        type_name: "LabResult",
        all: Some(RECORD),
        fields: &[("accessHistory", HISTORY)],
    },
    TypeGuards {
        type_name: "VisitNote",
        all: Some(RECORD),
        fields: &[("accessHistory", HISTORY)],
    },
    TypeGuards {
        type_name: "Medication",
        all: Some(RECORD),
        fields: &[("accessHistory", HISTORY)],
    },
    TypeGuards {
        type_name: "Allergy",
        all: Some(RECORD),
        fields: &[("accessHistory", HISTORY)],
    },
    TypeGuards {
        type_name: "Immunization",
        all: Some(RECORD),
        fields: &[("accessHistory", HISTORY)],
    },
    TypeGuards {
        type_name: "ClinicalDocument",
        all: Some(RECORD),
        fields: &[("accessHistory", HISTORY)],
    },
    TypeGuards {
        type_name: "RecordVersion",
        all: Some(RECORD),
        fields: &[],
    },
    TypeGuards {
        type_name: "MedicalRecordConnection",
        all: Some(RECORD),
        fields: &[],
    },
    TypeGuards {
        type_name: "MedicalRecordEdge",
        all: Some(RECORD),
        fields: &[],
    },
    TypeGuards {
        type_name: "LabResultConnection",
        all: Some(RECORD),
        fields: &[],
    },
    TypeGuards {
        type_name: "LabResultEdge",
        all: Some(RECORD),
        fields: &[],
    },
    TypeGuards {
        type_name: "VisitNoteConnection",
        all: Some(RECORD),
        fields: &[],
    },
    TypeGuards {
        type_name: "VisitNoteEdge",
        all: Some(RECORD),
        fields: &[],
    },
    TypeGuards {
        type_name: "ImmunizationConnection",
        all: Some(RECORD),
        fields: &[],
    },
    TypeGuards {
        type_name: "ImmunizationEdge",
        all: Some(RECORD),
        fields: &[],
    },
    TypeGuards {
        type_name: "ClinicalDocumentConnection",
        all: Some(RECORD),
        fields: &[],
    },
    TypeGuards {
        type_name: "ClinicalDocumentEdge",
        all: Some(RECORD),
        fields: &[],
    },
    // The provider directory, working hours and free slots: not patient PHI.
    TypeGuards {
        type_name: "Provider",
        all: Some(SignedIn),
        fields: &[("schedule", Access("access::schedule::calendar_grant"))],
    },
    TypeGuards {
        type_name: "ProviderConnection",
        all: Some(SignedIn),
        fields: &[],
    },
    TypeGuards {
        type_name: "ProviderEdge",
        all: Some(SignedIn),
        fields: &[],
    },
    TypeGuards {
        type_name: "WeeklyHours",
        all: Some(SignedIn),
        fields: &[],
    },
    TypeGuards {
        type_name: "Slot",
        all: Some(SignedIn),
        fields: &[],
    },
    TypeGuards {
        type_name: "TimeOff",
        all: Some(Capability("access::schedule::CalendarGrant")),
        fields: &[],
    },
    TypeGuards {
        type_name: "Appointment",
        all: Some(SCHEDULE),
        fields: &[("patient", Access("access::read_patient"))],
    },
    TypeGuards {
        type_name: "AppointmentConnection",
        all: Some(SCHEDULE),
        fields: &[],
    },
    TypeGuards {
        type_name: "AppointmentEdge",
        all: Some(SCHEDULE),
        fields: &[],
    },
];

/// The table, indexed.
pub static GUARDS: LazyLock<FieldGuards> = LazyLock::new(|| FieldGuards::new(TABLE));

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use async_graphql::parser::types::{TypeKind, TypeSystemDefinition};

    use super::*;

    /// Every field of every object and interface type in the built schema, as `Type.field`.
    fn schema_fields() -> BTreeSet<(String, String)> {
        let doc = async_graphql::parser::parse_schema(crate::schema::sdl()).unwrap();
        let mut out = BTreeSet::new();
        for def in doc.definitions {
            let TypeSystemDefinition::Type(t) = def else {
                continue;
            };
            let name = t.node.name.node.to_string();
            let fields = match &t.node.kind {
                TypeKind::Object(o) => &o.fields,
                TypeKind::Interface(i) => &i.fields,
                _ => continue,
            };
            for f in fields {
                out.insert((name.clone(), f.node.name.node.to_string()));
            }
        }
        out
    }

    #[test]
    fn every_field_of_the_schema_declares_its_guard() {
        let missing: Vec<String> = schema_fields()
            .into_iter()
            .filter(|(t, f)| GUARDS.lookup(t, f).is_none())
            .map(|(t, f)| format!("{t}.{f}"))
            .collect();
        assert!(
            missing.is_empty(),
            "fields without a guard (add them to schema::guards::TABLE): {missing:?}"
        );
    }

    #[test]
    fn every_entry_names_a_field_of_the_schema() {
        let fields = schema_fields();
        let types: BTreeSet<&str> = fields.iter().map(|(t, _)| t.as_str()).collect();
        for (t, f) in GUARDS.entries() {
            assert!(types.contains(t), "{t} is not a type of the schema");
            if f != "*" {
                assert!(
                    fields.contains(&(t.to_owned(), f.to_owned())),
                    "{t}.{f} is not a field of the schema"
                );
            }
        }
    }

    /// The open fields are few and reviewed: a new one must be added here on purpose.
    #[test]
    fn the_public_fields_are_the_reviewed_ones() {
        let public: BTreeSet<String> = schema_fields()
            .into_iter()
            .filter(|(t, f)| GUARDS.lookup(t, f) == Some(Public))
            .map(|(t, f)| format!("{t}.{f}"))
            .collect();
        let reviewed: BTreeSet<String> = [
            "Mutation.login",
            "Mutation.verifyMfa",
            "Mutation.refreshSession",
            "LoginPayload.accessToken",
            "LoginPayload.refreshToken",
            "LoginPayload.expiresAt",
            "LoginPayload.mfaRequired",
            "LoginPayload.mfaToken",
            "LoginPayload.idleTimeoutSeconds",
            "PageInfo.hasNextPage",
            "PageInfo.hasPreviousPage",
            "PageInfo.startCursor",
            "PageInfo.endCursor",
        ]
        .into_iter()
        .map(str::to_owned)
        .collect();
        assert_eq!(public, reviewed);
    }

    /// Root fields say who may call them; nothing at the root rests on a capability alone.
    #[test]
    fn root_fields_name_a_role_rule() {
        for (t, f) in schema_fields() {
            if ["Query", "Mutation", "Subscription"].contains(&t.as_str()) {
                let g = GUARDS.lookup(&t, &f);
                assert!(
                    matches!(g, Some(Public | Restricted | SignedIn | Roles(_))),
                    "{t}.{f}: {g:?}"
                );
            }
        }
    }

    /// At run time too, a field the table does not name is refused before it resolves.
    #[tokio::test]
    async fn a_field_missing_from_the_table_is_refused() {
        let without_me: Vec<TypeGuards> = TABLE
            .iter()
            .map(|t| TypeGuards {
                type_name: t.type_name,
                all: t.all,
                fields: Box::leak(
                    t.fields
                        .iter()
                        .copied()
                        .filter(|(f, _)| *f != "me")
                        .collect::<Vec<_>>()
                        .into_boxed_slice(),
                ),
            })
            .collect();
        let table: &'static [TypeGuards] = Box::leak(without_me.into_boxed_slice());
        let guards: &'static FieldGuards = Box::leak(Box::new(FieldGuards::new(table)));
        let schema = async_graphql::Schema::build(
            super::super::QueryRoot::default(),
            super::super::MutationRoot::default(),
            async_graphql::EmptySubscription,
        )
        .extension(crate::graphql::pipeline::Pipeline::new(
            8,
            crate::graphql::Limits::default(),
            guards,
        ))
        .finish();
        let code = |r: &async_graphql::Response| {
            r.errors[0]
                .extensions
                .as_ref()
                .and_then(|e| e.get("code"))
                .cloned()
        };
        // Anonymous: with the field's entry gone, it is refused as a server fault (and
        // logged), not even looked at for who is asking.
        let r = schema.execute("{ me { id } }").await;
        assert_eq!(r.errors.len(), 1, "{:?}", r.errors);
        assert_eq!(code(&r), Some(async_graphql::Value::from("INTERNAL")));
        // With the full table the same request meets the field's guard instead.
        let full = super::super::schema_builder(crate::graphql::Limits::default()).finish();
        let r = full.execute("{ me { id } }").await;
        assert_eq!(
            code(&r),
            Some(async_graphql::Value::from("UNAUTHENTICATED"))
        );
    }
}
