//! Demo data for development (refused in production): obviously fake people only.
use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use rand::Rng;
use sea_orm::{ConnectionTrait, EntityTrait, PaginatorTrait, Set};
use secrecy::SecretString;
use uuid::Uuid;

use crate::access::Role;
use crate::appointments::availability::{self, Schedule, WeeklyHours};
use crate::appointments::types::AppointmentStatus;
use crate::audit::{AuditEvent, WriteTxn};
use crate::auth::service::create_user;
use crate::consent::types::ConsentScope;
use crate::error::{AppError, AppResult};
use crate::patients::service::{NewPatient, build_row};
use crate::patients::types::{Address, EmergencyContact, GenderIdentity, SexAtBirth};
use crate::records::family;
use crate::records::kinds::*;
use crate::records::types::AllergySeverity;
use crate::state::AppState;
use entity::{
    appointments, care_team, consents, medical_record_versions, medical_records, providers,
    record_blobs, users,
};

pub const DEMO_PASSWORD: &str = "caregraph-demo";

/// The demo accounts, as README lists them.
pub const DEMO_USERS: &[(&str, Role)] = &[
    ("admin@caregraph.dev", Role::Admin),
    ("doctor@caregraph.dev", Role::Provider),
    ("doctor2@caregraph.dev", Role::Provider),
    ("patient@caregraph.dev", Role::Patient),
    ("patient2@caregraph.dev", Role::Patient),
    ("researcher@caregraph.dev", Role::Researcher),
];

fn demo_patient(
    given: &str,
    family: &str,
    birth: NaiveDate,
    email: &str,
    phone: &str,
    ssn: &str,
) -> NewPatient {
    NewPatient {
        mrn: None,
        given_name: given.into(),
        middle_name: None,
        family_name: family.into(),
        birth_date: birth,
        sex_at_birth: SexAtBirth::Undisclosed,
        gender_identity: GenderIdentity::Undisclosed,
        gender_identity_other: None,
        email: Some(email.into()),
        phone: Some(phone.into()),
        address: Some(Address {
            line1: Some("1 Example Street".into()),
            line2: None,
            city: Some("Demoville".into()),
            state_province: Some("Nowhere".into()),
            postal_code: Some("00000".into()),
            country: Some("US".into()),
        }),
        emergency_contact: Some(EmergencyContact {
            name: "Casey Democontact".into(),
            relationship: "sibling".into(),
            phone: "+15555550199".into(),
        }),
        ssn: Some(ssn.into()),
        preferred_language: Some("en-US".into()),
        consent_to_contact: true,
    }
}

/// Seed the demo accounts and their data, once. Returns `false` when users already exist.
pub async fn demo(state: &AppState) -> AppResult<bool> {
    if state.cfg.is_production() {
        return Err(AppError::Forbidden("demo data is refused in production"));
    }
    if users::Entity::find().count(&state.db).await? > 0 {
        return Ok(false);
    }
    let password = SecretString::from(DEMO_PASSWORD.to_owned());
    let mut hashes = Vec::new();
    for _ in DEMO_USERS {
        hashes.push(state.passwords.hash(&password).await?);
    }
    let now = Utc::now();
    let doctor = Uuid::new_v4();
    let doctor2 = Uuid::new_v4();
    let patient = Uuid::new_v4();
    let patient2 = Uuid::new_v4();
    let mut tx = WriteTxn::begin_in(&state.db, crate::messages::service::LANE).await?;
    let db = tx.conn();
    let week = demo_week();
    for (id, name, specialty, schedule) in [
        (doctor, "Dr. Demo Doctor", "Family medicine", Some(&week)),
        (doctor2, "Dr. Demo Second", "Cardiology", None),
    ] {
        let weekly = schedule
            .map(|s| crate::appointments::types::weekly_to_json(&s.weekly))
            .transpose()?;
        providers::Entity::insert(providers::ActiveModel {
            id: Set(id),
            display_name: Set(name.into()),
            created_at: Set(now),
            specialty: Set(Some(specialty.into())),
            time_zone: Set(schedule.map(|s| s.time_zone.name().to_owned())),
            slot_minutes: Set(schedule.map(|s| s.slot_minutes as i32)),
            weekly_hours: Set(weekly),
        })
        .exec_without_returning(db)
        .await?;
    }
    let p1 = demo_patient(
        "Testy",
        "Demopatient",
        NaiveDate::from_ymd_opt(1980, 1, 1).unwrap_or_default(),
        "patient@caregraph.dev",
        "+15555550100",
        "900000001",
    );
    let p2 = demo_patient(
        "Sample",
        "Examplepatient",
        NaiveDate::from_ymd_opt(1992, 6, 15).unwrap_or_default(),
        "patient2@caregraph.dev",
        "+15555550101",
        "900000002",
    );
    for (id, p) in [(patient, &p1), (patient2, &p2)] {
        patients_insert(state, db, id, p).await?;
    }
    let mut patient_user = Uuid::nil();
    let mut doctor_user = Uuid::nil();
    for ((email, role), hash) in DEMO_USERS.iter().zip(hashes) {
        let (pat, prov) = match *email {
            "doctor@caregraph.dev" => (None, Some(doctor)),
            "doctor2@caregraph.dev" => (None, Some(doctor2)),
            "patient@caregraph.dev" => (Some(patient), None),
            "patient2@caregraph.dev" => (Some(patient2), None),
            _ => (None, None),
        };
        let user = create_user(state, db, email, hash, *role, pat, prov).await?;
        match *email {
            "patient@caregraph.dev" => patient_user = user,
            "doctor@caregraph.dev" => doctor_user = user,
            _ => {}
        }
    }
    care_team::Entity::insert(care_team::ActiveModel {
        patient_id: Set(patient),
        provider_id: Set(doctor),
        assigned_by: Set(None),
        created_at: Set(now),
    })
    .exec_without_returning(db)
    .await?;
    consents::Entity::insert(consents::ActiveModel {
        id: Set(Uuid::new_v4()),
        patient_id: Set(patient),
        grantee_provider_id: Set(doctor),
        scopes: Set(ConsentScope::join(&ConsentScope::CLINICAL)),
        status: Set("ACTIVE".into()),
        granted_by: Set(patient_user),
        granted_at: Set(now),
        expires_at: Set(None),
        withdrawn_at: Set(None),
        withdrawn_by: Set(None),
    })
    .exec_without_returning(db)
    .await?;
    for (content, days_ago) in demo_records() {
        let id = Uuid::new_v4();
        let mut content = content;
        if let Content::Document(d) = &mut content {
            let body = b"Demo discharge letter: obviously fake.";
            d.blob_id = family::insert_blob(db, &state.keys, id, patient, body).await?;
            d.size = body.len() as u32;
        }
        let at = now - chrono::Duration::days(days_ago);
        let row = family::build_row(
            &state.keys,
            id,
            patient,
            doctor_user,
            &content,
            Sensitivity::Normal,
            at,
            Some(doctor),
        )?;
        entity::medical_records::Entity::insert(entity::medical_records::ActiveModel::from(row))
            .exec_without_returning(db)
            .await?;
    }
    let visits = demo_appointments(&week, now);
    for (starts_at, status, reason) in &visits {
        let new = crate::appointments::service::NewAppointment {
            patient_id: patient,
            provider_id: doctor,
            starts_at: *starts_at,
            duration_minutes: i32::try_from(week.slot_minutes).unwrap_or(30),
            reason: (*reason).into(),
        };
        let row = crate::appointments::service::build_row(
            &state.keys,
            Uuid::new_v4(),
            &new,
            *status,
            doctor_user,
        )?;
        entity::appointments::Entity::insert(entity::appointments::ActiveModel::from(row))
            .exec_without_returning(db)
            .await?;
    }
    let messages = demo_thread(state, db, patient, patient_user, doctor_user, now).await?;
    demo_billing(state, db, patient, patient_user, now).await?;
    tx.audit(
        AuditEvent::new("seed.demo", "system").detail(serde_json::json!({
            "users": DEMO_USERS.len(),
            "patients": 2,
            "appointments": visits.len(),
            "messages": messages,
        })),
    );
    tx.commit().await?;
    Ok(true)
}

/// A thread between the demo patient and the demo doctor, all of it read by both. Returns
/// how many messages it holds.
async fn demo_thread(
    state: &AppState,
    db: &impl ConnectionTrait,
    patient: Uuid,
    patient_user: Uuid,
    doctor_user: Uuid,
    now: chrono::DateTime<Utc>,
) -> AppResult<usize> {
    use crate::messages::service::seal_body;
    use entity::{message_threads, messages, thread_participants};
    let said = [
        (
            patient_user,
            "PATIENT",
            "Demo: could we talk about my metformin dose?",
            26,
        ),
        (
            doctor_user,
            "PROVIDER",
            "Demo: of course. Let's review it at your next visit.",
            25,
        ),
        (
            patient_user,
            "PATIENT",
            "Demo: thank you, see you then.",
            24,
        ),
    ];
    let thread = Uuid::new_v4();
    let at = |hours_ago: i64| now - chrono::Duration::hours(hours_ago);
    let (row, participants) = thread_rows(
        &state.keys,
        thread,
        patient,
        "Demo: my medication",
        [(patient_user, "PATIENT"), (doctor_user, "PROVIDER")],
        (at(26), at(24)),
        said.len() as i64,
    )?;
    message_threads::Entity::insert(row)
        .exec_without_returning(db)
        .await?;
    thread_participants::Entity::insert_many(participants)
        .exec_without_returning(db)
        .await?;
    for (seq, (sender, role, body, hours_ago)) in said.iter().enumerate() {
        let id = Uuid::new_v4();
        messages::Entity::insert(messages::ActiveModel {
            id: Set(id),
            seq: Set(seq as i64 + 1),
            thread_id: Set(thread),
            patient_id: Set(patient),
            sender_id: Set(*sender),
            sender_role: Set((*role).into()),
            body_enc: Set(seal_body(&state.keys, &id, body)?),
            sent_at: Set(at(*hours_ago)),
            retracted_at: Set(None),
        })
        .exec_without_returning(db)
        .await?;
    }
    Ok(said.len())
}

/// An open statement (two lines, nothing paid) and a coverage for the demo patient.
async fn demo_billing(
    state: &AppState,
    db: &impl ConnectionTrait,
    patient: Uuid,
    patient_user: Uuid,
    now: chrono::DateTime<Utc>,
) -> AppResult<()> {
    use crate::billing::service::{LineItem, seal_member_id};
    use entity::{billing_statements, coverages, ledger_entries};
    let today = now.date_naive();
    let lines = [
        LineItem {
            service_date: today - chrono::Duration::days(7),
            description: "Demo office visit".into(),
            code: "99213".into(),
            amount_cents: 12_500,
        },
        LineItem {
            service_date: today - chrono::Duration::days(7),
            description: "Demo basic metabolic panel".into(),
            code: "80048".into(),
            amount_cents: 4_250,
        },
    ];
    let (statement, charge) = statement_rows(&state.keys, patient, &lines, patient_user, now)?;
    billing_statements::Entity::insert(statement)
        .exec_without_returning(db)
        .await?;
    ledger_entries::Entity::insert(charge)
        .exec_without_returning(db)
        .await?;
    let cov = Uuid::new_v4();
    coverages::Entity::insert(coverages::ActiveModel {
        id: Set(cov),
        patient_id: Set(patient),
        payer: Set("Demo Health Plan".into()),
        plan_name: Set("Demo PPO Silver".into()),
        member_id_enc: Set(seal_member_id(&state.keys, &cov, "DEMO123456")?),
        group_number_enc: Set(None),
        relationship: Set("SELF".into()),
        effective_from: Set(today - chrono::Duration::days(365)),
        effective_to: Set(None),
        created_by: Set(patient_user),
        created_at: Set(now),
    })
    .exec_without_returning(db)
    .await?;
    Ok(())
}

/// A thread's row and its participants' rows: created and last written at `when`, read by
/// every participant up to `read_up_to`.
fn thread_rows(
    keys: &crate::crypto::KeyRing,
    thread: Uuid,
    patient: Uuid,
    subject: &str,
    participants: [(Uuid, &str); 2],
    when: (DateTime<Utc>, DateTime<Utc>),
    read_up_to: i64,
) -> AppResult<(
    entity::message_threads::ActiveModel,
    Vec<entity::thread_participants::ActiveModel>,
)> {
    use crate::messages::service::seal_subject;
    let (created, last) = when;
    let row = entity::message_threads::ActiveModel {
        id: Set(thread),
        patient_id: Set(patient),
        subject_enc: Set(seal_subject(keys, &thread, subject)?),
        created_by: Set(participants[0].0),
        created_at: Set(created),
        last_message_at: Set(last),
    };
    let members = participants
        .iter()
        .map(|(user, role)| entity::thread_participants::ActiveModel {
            thread_id: Set(thread),
            user_id: Set(*user),
            role: Set((*role).into()),
            joined_at: Set(created),
            last_read_seq: Set(read_up_to),
            archived_at: Set(None),
        })
        .collect();
    Ok((row, members))
}

/// An open statement issued five days ago, due in 25, with its one charge on the ledger.
fn statement_rows(
    keys: &crate::crypto::KeyRing,
    patient: Uuid,
    lines: &[crate::billing::service::LineItem],
    created_by: Uuid,
    now: DateTime<Utc>,
) -> AppResult<(
    entity::billing_statements::ActiveModel,
    entity::ledger_entries::ActiveModel,
)> {
    let today = now.date_naive();
    let total: i64 = lines.iter().map(|l| l.amount_cents).sum();
    let id = Uuid::new_v4();
    let statement = entity::billing_statements::ActiveModel {
        id: Set(id),
        patient_id: Set(patient),
        issued_on: Set(today - chrono::Duration::days(5)),
        due_on: Set(today + chrono::Duration::days(25)),
        currency: Set("USD".into()),
        total_cents: Set(total),
        lines_enc: Set(crate::billing::service::seal_lines(keys, &id, lines)?),
        status: Set("OPEN".into()),
        void_reason_enc: Set(None),
        created_by: Set(created_by),
        created_at: Set(now),
    };
    let charge = entity::ledger_entries::ActiveModel {
        id: Set(Uuid::new_v4()),
        statement_id: Set(id),
        patient_id: Set(patient),
        kind: Set("CHARGE".into()),
        amount_cents: Set(total),
        payment_id: Set(None),
        created_by: Set(created_by),
        created_at: Set(now),
        reason_enc: Set(None),
    };
    Ok((statement, charge))
}

/// The demo doctor's week: Monday to Friday, 09:00–12:00 and 13:00–17:00 in Berlin,
/// 30-minute slots.
fn demo_week() -> Schedule {
    use chrono::{NaiveTime, Weekday};
    let t = |h| NaiveTime::from_hms_opt(h, 0, 0).unwrap_or_default();
    let days = [
        Weekday::Mon,
        Weekday::Tue,
        Weekday::Wed,
        Weekday::Thu,
        Weekday::Fri,
    ];
    Schedule {
        time_zone: chrono_tz::Tz::Europe__Berlin,
        slot_minutes: 30,
        weekly: days
            .iter()
            .flat_map(|&weekday| {
                [(9, 12), (13, 17)].map(|(start, end)| WeeklyHours {
                    weekday,
                    start: t(start),
                    end: t(end),
                })
            })
            .collect(),
    }
}

/// The demo patient's visits with the demo doctor, placed in the doctor's hours relative to
/// `now`: one completed about a week ago, and two to come in the next two weeks.
fn demo_appointments(
    week: &Schedule,
    now: chrono::DateTime<Utc>,
) -> Vec<(chrono::DateTime<Utc>, AppointmentStatus, &'static str)> {
    use chrono::TimeDelta;
    let mut out = Vec::new();
    let past =
        availability::working_intervals(week, now - TimeDelta::days(10), now - TimeDelta::days(3));
    if let Some((start, _)) = past.first() {
        out.push((*start, AppointmentStatus::Completed, "Demo annual check-up"));
    }
    let from = now + TimeDelta::days(1);
    let slots = availability::free_slots(week, &[], from, from + TimeDelta::days(14), now);
    for (i, reason) in [
        (0, "Demo follow-up: blood pressure"),
        (20, "Demo A1c review"),
    ] {
        if let Some((start, _)) = slots.get(i) {
            out.push((*start, AppointmentStatus::Scheduled, reason));
        }
    }
    out
}

/// The demo patient's chart: one record of every kind, with how many days ago each happened.
fn demo_records() -> Vec<(Content, i64)> {
    vec![
        (
            Content::Allergy(AllergyContent {
                substance: "Demo peanut protein".into(),
                reaction: Some("Demo hives".into()),
                severity: AllergySeverity::Moderate,
                resolved_at: None,
                resolved_by: None,
            }),
            400,
        ),
        (
            Content::Medication(MedicationContent {
                drug: "Demo lisinopril 10 mg tablet".into(),
                dose: "10 mg".into(),
                route: "oral".into(),
                frequency: "once daily".into(),
                stop_on: None,
                stop_reason: None,
            }),
            120,
        ),
        (
            Content::Lab(LabContent {
                code: "4548-4".into(),
                system: "http://loinc.org".into(),
                display: Some("Hemoglobin A1c".into()),
                value: "6.1".into(),
                unit: Some("%".into()),
                reference_range: Some("4.0-5.6".into()),
                abnormal: true,
            }),
            30,
        ),
        (
            Content::Note(NoteContent {
                text: "Demo visit: blood pressure well controlled; recheck A1c in 3 months.".into(),
            }),
            30,
        ),
        (
            Content::Immunization(ImmunizationContent {
                cvx_code: "141".into(),
                vaccine: crate::records::cvx::vaccine("141")
                    .map(|v| v.name.to_owned())
                    .unwrap_or_else(|| "Influenza, seasonal, injectable".into()),
                lot: Some("DEMO-FLU-26".into()),
                site: Some("left deltoid".into()),
                route: Some("intramuscular".into()),
                dose: Some("0.5".into()),
                dose_unit: Some("mL".into()),
            }),
            60,
        ),
        (
            Content::Document(DocumentContent {
                title: "Demo discharge letter".into(),
                document_type: "Discharge summary".into(),
                classification: Some("clinical-note".into()),
                content_type: "text/plain".into(),
                blob_id: Uuid::nil(),
                size: 0,
            }),
            200,
        ),
    ]
}

async fn patients_insert(
    state: &AppState,
    db: &sea_orm::DatabaseTransaction,
    id: Uuid,
    p: &NewPatient,
) -> AppResult<()> {
    entity::patients::Entity::insert(build_row(&state.keys, id, p, None)?)
        .exec_without_returning(db)
        .await?;
    Ok(())
}

const GIVEN: &[&str] = &[
    "Avery", "Blake", "Cameron", "Dakota", "Emerson", "Finley", "Harper", "Jules", "Kendall",
    "Logan", "Morgan", "Parker", "Quinn", "Riley", "Sawyer", "Taylor",
];
/// Family names are built from three syllables (40 × 40 × 40 = 64,000 combinations), so a
/// family-name search matches a handful of rows at 100,000 patients, as in real life,
/// rather than a tenth of the table.
const SYLLABLES: [&[&str]; 3] = [
    &[
        "Ab", "Bel", "Cor", "Dem", "Eld", "Fen", "Gal", "Hol", "Ist", "Jun", "Kel", "Lor", "Mab",
        "Nor", "Ost", "Pel", "Quil", "Ros", "Sam", "Tes", "Ul", "Ven", "Wyn", "Yar", "Zel", "Ash",
        "Bro", "Cal", "Dun", "Ell", "Fal", "Gar", "Har", "Ing", "Jas", "Kin", "Lin", "Mor", "Nel",
        "Orm",
    ],
    &[
        "a", "e", "i", "o", "u", "ar", "er", "in", "on", "ul", "am", "em", "is", "ob", "ut", "al",
        "el", "il", "ol", "un", "and", "end", "ind", "ond", "und", "ast", "est", "ist", "ost",
        "ust", "ay", "ey", "oy", "ai", "ei", "au", "eu", "ia", "io", "ua",
    ],
    &[
        "son", "well", "by", "worth", "ridge", "field", "ton", "ley", "ham", "more", "wood",
        "ford", "man", "stead", "bury", "croft", "dale", "gate", "holm", "land", "mere", "shaw",
        "thorpe", "wick", "burn", "cliff", "combe", "den", "hurst", "low", "marsh", "nell", "port",
        "rick", "stone", "vale", "ward", "wynn", "yard", "fixture",
    ],
];

fn synthetic_family_name(rng: &mut impl Rng) -> String {
    SYLLABLES
        .iter()
        .map(|s| s[rng.gen_range(0..s.len())])
        .collect()
}

/// How long each bulk visit lasts: the grid the bulk visits sit on.
const BULK_VISIT: TimeDelta = TimeDelta::minutes(15);
/// Bulk visits keep this far from now on both sides, so the demo doctor's own next weeks
/// (the demo patient's visits, and the free slots a demo books into) stay as `demo` left them.
const BULK_CLEARANCE: TimeDelta = TimeDelta::days(30);

/// Where the next bulk visits go on the demo doctor's calendar. One provider may not have
/// two non-cancelled visits that overlap (PostgreSQL refuses them with an exclusion
/// constraint), and every bulk visit is with the demo doctor, so each takes its own slot of
/// a round-the-clock grid of [`BULK_VISIT`]s: upcoming ones after everything the doctor
/// already has (and at least [`BULK_CLEARANCE`] from now), completed ones before everything
/// they already have. Nothing overlaps within a run, across batches, or across runs of
/// `seed-demo --patients` on the same database. At 100,000 patients (two upcoming visits and
/// one past each) the grid reaches about 5.7 years ahead and 2.9 years back: synthetic
/// load, not a realistic calendar.
struct VisitGrid {
    /// Start of the next free upcoming slot.
    upcoming: DateTime<Utc>,
    /// End of the next free past slot (slots are taken going back in time).
    past_end: DateTime<Utc>,
}

impl VisitGrid {
    async fn load(
        db: &impl ConnectionTrait,
        doctor: Uuid,
        now: DateTime<Utc>,
    ) -> AppResult<VisitGrid> {
        use sea_orm::sea_query::Expr;
        use sea_orm::{ColumnTrait, QueryFilter, QuerySelect};
        let (first, last): (Option<DateTime<Utc>>, Option<DateTime<Utc>>) =
            appointments::Entity::find()
                .select_only()
                .column_as(Expr::col(appointments::Column::StartsAt).min(), "first")
                .column_as(Expr::col(appointments::Column::EndsAt).max(), "last")
                .filter(appointments::Column::ProviderId.eq(doctor))
                .into_tuple()
                .one(db)
                .await?
                .unwrap_or((None, None));
        let hour = |t: DateTime<Utc>| {
            let s = t.timestamp().div_euclid(3600) * 3600;
            DateTime::from_timestamp(s, 0).unwrap_or(t)
        };
        let after = last.map_or(now + BULK_CLEARANCE, |l| l.max(now + BULK_CLEARANCE));
        let before = first.map_or(now - BULK_CLEARANCE, |f| f.min(now - BULK_CLEARANCE));
        let up = hour(after);
        Ok(VisitGrid {
            upcoming: if up < after {
                up + TimeDelta::hours(1)
            } else {
                up
            },
            past_end: hour(before),
        })
    }

    fn next_upcoming(&mut self) -> DateTime<Utc> {
        let t = self.upcoming;
        self.upcoming += BULK_VISIT;
        t
    }

    /// The start of the next past slot.
    fn next_past(&mut self) -> DateTime<Utc> {
        self.past_end -= BULK_VISIT;
        self.past_end
    }
}

/// One batch of bulk patients' charts and visits, sealed as the API seals them.
#[derive(Default)]
struct BulkCharts {
    records: Vec<medical_records::ActiveModel>,
    versions: Vec<medical_record_versions::ActiveModel>,
    blobs: Vec<record_blobs::ActiveModel>,
    appointments: Vec<appointments::ActiveModel>,
}

/// Who writes the bulk charts, and when.
struct Author {
    user: Uuid,
    provider: Uuid,
    now: DateTime<Utc>,
}

const LABS: &[(&str, &str, &str, f64, f64, &str)] = &[
    ("4548-4", "Hemoglobin A1c", "%", 4.8, 8.5, "4.0-5.6"),
    ("2345-7", "Glucose", "mmol/L", 3.8, 9.0, "3.9-5.5"),
    ("2093-3", "Cholesterol", "mmol/L", 3.5, 7.5, "<5.2"),
    ("718-7", "Hemoglobin", "g/dL", 11.0, 17.0, "12.0-16.0"),
    ("2160-0", "Creatinine", "umol/L", 50.0, 130.0, "45-110"),
];
const DRUGS: &[(&str, &str, &str)] = &[
    ("Demo metformin 500 mg tablet", "500 mg", "twice daily"),
    ("Demo lisinopril 10 mg tablet", "10 mg", "once daily"),
    (
        "Demo atorvastatin 20 mg tablet",
        "20 mg",
        "once daily at night",
    ),
    ("Demo levothyroxine 50 mcg tablet", "50 mcg", "once daily"),
    ("Demo amlodipine 5 mg tablet", "5 mg", "once daily"),
];
const SUBSTANCES: &[(&str, &str)] = &[
    ("Demo penicillin", "Demo rash"),
    ("Demo peanut protein", "Demo hives"),
    ("Demo latex", "Demo itching"),
    ("Demo shellfish", "Demo swelling"),
    ("Demo sulfonamides", "Demo fever"),
];
/// Real CVX codes (checked against the CDC table when the chart is built).
const CVX: &[&str] = &["141", "208", "115", "03", "33"];
const DOCUMENT_BODY: &[u8] = b"Demo referral letter for a synthetic patient: obviously fake.";

/// One bulk patient's chart (2 lab results, a visit note, 2 medications of which one was
/// stopped, an allergy, an immunization, a small document) and visits with the demo doctor
/// (one COMPLETED at `past`, two SCHEDULED at `upcoming`), built as the API builds them:
/// `family::build_row` for records, the prior version and stop reason of the stopped
/// medication sealed as `stopMedication` seals them, the document body as `addDocument`
/// stores it, `appointments::service::build_row` and `seal_notes` for visits.
fn bulk_chart(
    keys: &crate::crypto::KeyRing,
    rng: &mut impl Rng,
    out: &mut BulkCharts,
    patient: Uuid,
    by: &Author,
    past: DateTime<Utc>,
    upcoming: [DateTime<Utc>; 2],
) -> AppResult<()> {
    use crate::appointments::service::{self as visits, NewAppointment};
    use crate::crypto::Slot;
    let now = by.now;
    let days_ago = |d: i64| day(now - TimeDelta::days(d));
    let record = |content: &Content, at: DateTime<Utc>| {
        family::build_row(
            keys,
            Uuid::new_v4(),
            patient,
            by.user,
            content,
            Sensitivity::Normal,
            at,
            Some(by.provider),
        )
    };
    let mut rows = Vec::with_capacity(8);

    let first_lab = rng.gen_range(0..LABS.len());
    for (i, ago) in [rng.gen_range(1..30), rng.gen_range(30..200)]
        .into_iter()
        .enumerate()
    {
        let (code, display, unit, lo, hi, range) = LABS[(first_lab + i) % LABS.len()];
        let value: f64 = rng.gen_range(lo..hi);
        let abnormal = rng.gen_bool(0.25);
        let content = Content::Lab(LabContent {
            code: code.into(),
            system: "http://loinc.org".into(),
            display: Some(display.into()),
            value: format!("{value:.1}"),
            unit: Some(unit.into()),
            reference_range: Some(range.into()),
            abnormal,
        });
        let at = now - TimeDelta::days(ago) - TimeDelta::minutes(rng.gen_range(0..600));
        rows.push(record(&content, at)?);
    }
    let note = Content::Note(NoteContent {
        text: "Demo visit: synthetic patient, no complaints; continue current medication.".into(),
    });
    rows.push(record(&note, day(past))?);

    let first_drug = rng.gen_range(0..DRUGS.len());
    let (drug, dose, frequency) = DRUGS[first_drug];
    let active = Content::Medication(MedicationContent {
        drug: drug.into(),
        dose: dose.into(),
        route: "oral".into(),
        frequency: frequency.into(),
        stop_on: None,
        stop_reason: None,
    });
    rows.push(record(&active, days_ago(rng.gen_range(30..700)))?);
    // Prescribed, then stopped through `stopMedication`: version 2, STOPPED, the first
    // version kept with the reason, as `family::change` writes them.
    let (drug, dose, frequency) = DRUGS[(first_drug + 1) % DRUGS.len()];
    let started = days_ago(rng.gen_range(200..900));
    let prescribed = MedicationContent {
        drug: drug.into(),
        dose: dose.into(),
        route: "oral".into(),
        frequency: frequency.into(),
        stop_on: None,
        stop_reason: None,
    };
    let reason = "Demo: stopped for side effects";
    let v1 = record(&Content::Medication(prescribed.clone()), started)?;
    let stopped = Content::Medication(MedicationContent {
        stop_on: Some((started + TimeDelta::days(rng.gen_range(14..180))).date_naive()),
        stop_reason: Some(reason.into()),
        ..prescribed.clone()
    });
    let mut v2 = family::build_row(
        keys,
        v1.id,
        patient,
        by.user,
        &stopped,
        Sensitivity::Normal,
        started,
        Some(by.provider),
    )?;
    v2.status = Some(MedicationStatus::Stopped.as_str().into());
    v2.version = 2;
    let version_id = Uuid::new_v4();
    let version_slot = |column| Slot {
        table: family::VERSIONS,
        column,
        row: &version_id,
    };
    out.versions.push(medical_record_versions::ActiveModel {
        id: Set(version_id),
        record_id: Set(v1.id),
        patient_id: Set(patient),
        version: Set(v1.version),
        status: Set(v1.status.clone()),
        record_status: Set(v1.record_status.clone()),
        sensitivity: Set(v1.sensitivity.clone()),
        occurred_at: Set(v1.occurred_at),
        content_enc: Set(keys.seal(
            version_slot("content"),
            &Content::Medication(prescribed).to_json()?,
        )?),
        made_by: Set(v1.updated_by),
        made_at: Set(v1.updated_at),
        change: Set("STOP".into()),
        changed_by: Set(by.user),
        changed_at: Set(now),
        reason_enc: Set(Some(keys.seal_str(version_slot("reason"), reason)?)),
    });
    rows.push(v2);

    let (substance, reaction) = SUBSTANCES[rng.gen_range(0..SUBSTANCES.len())];
    let allergy = Content::Allergy(AllergyContent {
        substance: substance.into(),
        reaction: Some(reaction.into()),
        severity: [
            AllergySeverity::Mild,
            AllergySeverity::Moderate,
            AllergySeverity::Severe,
        ][rng.gen_range(0..3)],
        resolved_at: None,
        resolved_by: None,
    });
    rows.push(record(
        &allergy,
        now - TimeDelta::days(rng.gen_range(300..3000)),
    )?);

    let vaccine = crate::records::cvx::vaccine(CVX[rng.gen_range(0..CVX.len())])
        .ok_or_else(|| AppError::internal_msg("a bulk CVX code is not in the CDC table"))?;
    let shot = Content::Immunization(ImmunizationContent {
        cvx_code: vaccine.code.into(),
        vaccine: vaccine.name.into(),
        lot: Some(format!("DEMO-LOT-{}", rng.gen_range(100..1000))),
        site: Some("left deltoid".into()),
        route: Some("intramuscular".into()),
        dose: Some("0.5".into()),
        dose_unit: Some("mL".into()),
    });
    rows.push(record(&shot, days_ago(rng.gen_range(10..400)))?);

    let document_id = Uuid::new_v4();
    let blob_id = Uuid::new_v4();
    out.blobs.push(record_blobs::ActiveModel {
        id: Set(blob_id),
        record_id: Set(document_id),
        patient_id: Set(patient),
        content_enc: Set(keys.seal(
            Slot {
                table: family::BLOBS,
                column: "content",
                row: &blob_id,
            },
            DOCUMENT_BODY,
        )?),
        created_at: Set(now),
    });
    let document = Content::Document(DocumentContent {
        title: "Demo referral letter".into(),
        document_type: "Referral".into(),
        classification: Some("clinical-note".into()),
        content_type: "text/plain".into(),
        blob_id,
        size: DOCUMENT_BODY.len() as u32,
    });
    rows.push(family::build_row(
        keys,
        document_id,
        patient,
        by.user,
        &document,
        Sensitivity::Normal,
        days_ago(rng.gen_range(10..500)),
        Some(by.provider),
    )?);
    out.records
        .extend(rows.into_iter().map(medical_records::ActiveModel::from));

    let minutes = i32::try_from(BULK_VISIT.num_minutes()).unwrap_or(15);
    let visit = |starts_at, reason: &str| NewAppointment {
        patient_id: patient,
        provider_id: by.provider,
        starts_at,
        duration_minutes: minutes,
        reason: reason.into(),
    };
    // Completed through `completeAppointment`: version 2, with notes.
    let id = Uuid::new_v4();
    let mut done = visits::build_row(
        keys,
        id,
        &visit(past, "Demo annual check-up"),
        AppointmentStatus::Completed,
        by.user,
    )?;
    done.notes_enc = Some(visits::seal_notes(keys, id, "Demo notes: all well.")?);
    done.version = 2;
    out.appointments.push(done.into());
    for (starts_at, reason) in upcoming
        .into_iter()
        .zip(["Demo follow-up", "Demo lab review"])
    {
        let row = visits::build_row(
            keys,
            Uuid::new_v4(),
            &visit(starts_at, reason),
            AppointmentStatus::Scheduled,
            by.user,
        )?;
        out.appointments.push(row.into());
    }
    Ok(())
}

/// Midnight UTC of the day `t` falls on, as the API stores dates given as days.
fn day(t: DateTime<Utc>) -> DateTime<Utc> {
    t.date_naive().and_time(chrono::NaiveTime::MIN).and_utc()
}

/// A synthetic patient's portal account ([`bulk_patients`] with `portal`): signs in with
/// [`DEMO_PASSWORD`], and has a thread with the demo doctor and an open statement.
#[derive(Clone, Debug)]
pub struct PortalAccount {
    pub email: String,
    pub patient: Uuid,
    pub thread: Uuid,
    pub statement: Uuid,
}

/// Add `n` synthetic patients on the demo doctor's care team with full clinical consent,
/// written exactly as the API writes them (encrypted fields, blind indexes), in batches,
/// each with a chart and visits with the demo doctor ([`bulk_chart`]). With `portal`, each
/// also gets a [`PortalAccount`]. `progress` hears, after each batch, how many are done and
/// the batch's patient ids and accounts.
pub async fn bulk_patients(
    state: &AppState,
    n: u64,
    portal: bool,
    mut progress: impl FnMut(u64, &[Uuid], &[PortalAccount]),
) -> AppResult<()> {
    use sea_orm::{ColumnTrait, QueryFilter};
    if state.cfg.is_production() {
        return Err(AppError::Forbidden("demo data is refused in production"));
    }
    let doctor_user = users::Entity::find()
        .filter(
            users::Column::EmailBidx.eq(crate::auth::service::user_email_index(
                state,
                "doctor@caregraph.dev",
            )),
        )
        .one(&state.db)
        .await?
        .ok_or(AppError::Conflict(
            "seed the demo accounts first (caregraph seed-demo)",
        ))?;
    let doctor = doctor_user
        .provider_id
        .ok_or_else(|| AppError::internal_msg("demo doctor has no provider id"))?;
    let scopes = ConsentScope::join(&ConsentScope::CLINICAL);
    let mut grid = VisitGrid::load(&state.db, doctor, Utc::now()).await?;
    // One hash for every synthetic account (they share the demo password): hashing each
    // would cost 10,000 accounts minutes at the production parameters.
    let password_hash = if portal {
        state
            .passwords
            .hash(&SecretString::from(DEMO_PASSWORD.to_owned()))
            .await?
    } else {
        String::new()
    };
    // Patients a transaction. Random keys put each batch's rows on pages all over every
    // index, and each commit writes those pages to the WAL and back: fewer, larger batches
    // cost less (10,000 patients on SQLite: 2.7 s at 500 a batch, 1.9 s at 2,000, 2.2 s at
    // 5,000). A batch of 2,000 holds about 100 MB of rows.
    const BATCH: u64 = 2000;
    let mut done = 0;
    while done < n {
        let size = BATCH.min(n - done);
        let mut rows = Vec::with_capacity(size as usize);
        let mut team = Vec::with_capacity(size as usize);
        let mut cons = Vec::with_capacity(size as usize);
        let mut ids = Vec::with_capacity(size as usize);
        let mut charts = BulkCharts::default();
        let mut accounts = BulkAccounts::default();
        let now = Utc::now();
        let author = Author {
            user: doctor_user.id,
            provider: doctor,
            now,
        };
        // A patient's two upcoming visits are a batch apart, not back to back.
        let first: Vec<_> = (0..size).map(|_| grid.next_upcoming()).collect();
        let second: Vec<_> = (0..size).map(|_| grid.next_upcoming()).collect();
        {
            let mut rng = rand::thread_rng();
            for i in 0..size as usize {
                let id = Uuid::new_v4();
                ids.push(id);
                let birth = NaiveDate::from_ymd_opt(
                    rng.gen_range(1940..2020),
                    rng.gen_range(1..=12),
                    rng.gen_range(1..=28),
                )
                .unwrap_or_default();
                let p = NewPatient {
                    mrn: Some(format!(
                        "BULK{}",
                        &id.simple().to_string()[..12].to_uppercase()
                    )),
                    given_name: GIVEN[rng.gen_range(0..GIVEN.len())].into(),
                    middle_name: None,
                    family_name: synthetic_family_name(&mut rng),
                    birth_date: birth,
                    sex_at_birth: SexAtBirth::Undisclosed,
                    gender_identity: GenderIdentity::Undisclosed,
                    gender_identity_other: None,
                    email: None,
                    phone: None,
                    address: None,
                    emergency_contact: None,
                    ssn: None,
                    preferred_language: None,
                    consent_to_contact: false,
                };
                rows.push(build_row(&state.keys, id, &p, None)?);
                team.push(care_team::ActiveModel {
                    patient_id: Set(id),
                    provider_id: Set(doctor),
                    assigned_by: Set(None),
                    created_at: Set(now),
                });
                cons.push(consents::ActiveModel {
                    id: Set(Uuid::new_v4()),
                    patient_id: Set(id),
                    grantee_provider_id: Set(doctor),
                    scopes: Set(scopes.clone()),
                    status: Set("ACTIVE".into()),
                    granted_by: Set(doctor_user.id),
                    granted_at: Set(now),
                    expires_at: Set(None),
                    withdrawn_at: Set(None),
                    withdrawn_by: Set(None),
                });
                bulk_chart(
                    &state.keys,
                    &mut rng,
                    &mut charts,
                    id,
                    &author,
                    grid.next_past(),
                    [first[i], second[i]],
                )?;
                if portal {
                    accounts.add(state, id, &password_hash, doctor_user.id, now)?;
                }
            }
        }
        let mut tx = WriteTxn::begin_in(&state.db, crate::messages::service::LANE).await?;
        let db = tx.conn();
        if db.get_database_backend() == sea_orm::DbBackend::Sqlite {
            // The bulk load's random keys touch pages all over every index: with SQLite's
            // default 2 MB page cache, a batch spilled and re-read its pages from the file
            // (over half of the seed's time at 10,000 patients). Per connection, and this
            // transaction's may be any of the pool's.
            db.execute_unprepared(BULK_SQLITE_CACHE).await?;
        }
        // Rows a statement, so each stays far below the bind-parameter limits of both
        // backends (SQLite 32,766, PostgreSQL 65,535): 32 columns a patient, 10 a consent,
        // 15 a record, 16 an appointment.
        insert_chunked(db, rows, 250).await?;
        insert_chunked(db, team, 1000).await?;
        insert_chunked(db, cons, 1000).await?;
        insert_chunked(db, charts.records, 1000).await?;
        insert_chunked(db, charts.versions, 1000).await?;
        insert_chunked(db, charts.blobs, 1000).await?;
        insert_chunked(db, charts.appointments, 1000).await?;
        insert_chunked(db, accounts.users, 1000).await?;
        insert_chunked(db, accounts.threads, 1000).await?;
        insert_chunked(db, accounts.participants, 1000).await?;
        insert_chunked(db, accounts.statements, 1000).await?;
        insert_chunked(db, accounts.charges, 1000).await?;
        tx.audit(AuditEvent::new("seed.bulk_patients", "system").detail(
            serde_json::json!({ "patients": size, "portal_accounts": accounts.list.len() }),
        ));
        tx.commit().await?;
        done += size;
        progress(done, &ids, &accounts.list);
    }
    refresh_statistics(&state.db).await
}

/// One batch's portal accounts and their rows.
#[derive(Default)]
struct BulkAccounts {
    list: Vec<PortalAccount>,
    users: Vec<users::ActiveModel>,
    threads: Vec<entity::message_threads::ActiveModel>,
    participants: Vec<entity::thread_participants::ActiveModel>,
    statements: Vec<entity::billing_statements::ActiveModel>,
    charges: Vec<entity::ledger_entries::ActiveModel>,
}

impl BulkAccounts {
    fn add(
        &mut self,
        state: &AppState,
        patient: Uuid,
        password_hash: &str,
        doctor_user: Uuid,
        now: DateTime<Utc>,
    ) -> AppResult<()> {
        let user = Uuid::new_v4();
        let email = format!("bulk-{}@caregraph.dev", &patient.simple().to_string()[..12]);
        self.users.push(crate::auth::service::user_row(
            state,
            user,
            &email,
            password_hash.to_owned(),
            Role::Patient,
            Some(patient),
            None,
        )?);
        let thread = Uuid::new_v4();
        let (row, members) = thread_rows(
            &state.keys,
            thread,
            patient,
            "Synthetic: questions for my doctor",
            [(user, "PATIENT"), (doctor_user, "PROVIDER")],
            (now, now),
            0,
        )?;
        self.threads.push(row);
        self.participants.extend(members);
        let lines = [crate::billing::service::LineItem {
            service_date: now.date_naive() - chrono::Duration::days(7),
            description: "Synthetic office visit".into(),
            code: "99213".into(),
            amount_cents: 12_500,
        }];
        let (statement, charge) = statement_rows(&state.keys, patient, &lines, user, now)?;
        let statement_id = *statement.id.as_ref();
        self.statements.push(statement);
        self.charges.push(charge);
        self.list.push(PortalAccount {
            email,
            patient,
            thread,
            statement: statement_id,
        });
        Ok(())
    }
}

/// 64 MiB of page cache (a negative size is in KiB). 256 MiB measured no better.
const BULK_SQLITE_CACHE: &str = "PRAGMA cache_size = -65536";

/// `insert_many` in statements of at most `per` rows.
async fn insert_chunked<A>(db: &impl ConnectionTrait, rows: Vec<A>, per: usize) -> AppResult<()>
where
    A: sea_orm::ActiveModelTrait,
    <A::Entity as EntityTrait>::Model: sea_orm::IntoActiveModel<A>,
{
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let chunk: Vec<A> = rows.by_ref().take(per).collect();
        <A::Entity as EntityTrait>::insert_many(chunk)
            .exec_without_returning(db)
            .await?;
    }
    Ok(())
}

/// After a bulk load, what a DBA runs after a restore: planner statistics for the filled
/// tables and, on PostgreSQL, the visibility map that lets the care-team check answer from
/// its index alone. Autovacuum would get there in time; where it is off (as on the
/// benchmark's machine), it never does.
async fn refresh_statistics(db: &sea_orm::DatabaseConnection) -> AppResult<()> {
    let sql = match db.get_database_backend() {
        sea_orm::DbBackend::Postgres => {
            "VACUUM (ANALYZE) patients, care_team, consents, medical_records, \
             medical_record_versions, record_blobs, appointments, users, message_threads, \
             thread_participants, billing_statements, ledger_entries"
        }
        _ => "ANALYZE",
    };
    db.execute_unprepared(sql).await?;
    Ok(())
}
