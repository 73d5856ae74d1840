//! Demo data for development (refused in production): obviously fake people only.
use chrono::{NaiveDate, Utc};
use rand::Rng;
use sea_orm::{EntityTrait, PaginatorTrait, Set};
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
use entity::{care_team, consents, providers, users};

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
    let mut tx = WriteTxn::begin(&state.db).await?;
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
    tx.audit(
        AuditEvent::new("seed.demo", "system").detail(serde_json::json!({
            "users": DEMO_USERS.len(),
            "patients": 2,
            "appointments": visits.len(),
        })),
    );
    tx.commit().await?;
    Ok(true)
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

/// Add `n` synthetic patients on the demo doctor's care team with full clinical consent,
/// written exactly as the API writes them (encrypted fields, blind indexes), in batches.
pub async fn bulk_patients(
    state: &AppState,
    n: u64,
    mut progress: impl FnMut(u64, &[Uuid]),
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
    const BATCH: u64 = 500;
    let mut done = 0;
    while done < n {
        let size = BATCH.min(n - done);
        let mut rows = Vec::with_capacity(size as usize);
        let mut team = Vec::with_capacity(size as usize);
        let mut cons = Vec::with_capacity(size as usize);
        let mut ids = Vec::with_capacity(size as usize);
        let now = Utc::now();
        {
            let mut rng = rand::thread_rng();
            for _ in 0..size {
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
            }
        }
        let mut tx = WriteTxn::begin(&state.db).await?;
        // 30 columns a row: 500 rows stay far below bind-parameter limits on both backends.
        for chunk in rows.chunks(250) {
            entity::patients::Entity::insert_many(chunk.to_vec())
                .exec_without_returning(tx.conn())
                .await?;
        }
        care_team::Entity::insert_many(team)
            .exec_without_returning(tx.conn())
            .await?;
        consents::Entity::insert_many(cons)
            .exec_without_returning(tx.conn())
            .await?;
        tx.audit(
            AuditEvent::new("seed.bulk_patients", "system")
                .detail(serde_json::json!({ "patients": size })),
        );
        tx.commit().await?;
        done += size;
        progress(done, &ids);
    }
    refresh_statistics(&state.db).await
}

/// After a bulk load, what a DBA runs after a restore: planner statistics for the filled
/// tables and, on PostgreSQL, the visibility map that lets the care-team check answer from
/// its index alone. Autovacuum would get there in time; where it is off (as on the
/// benchmark's machine), it never does.
async fn refresh_statistics(db: &sea_orm::DatabaseConnection) -> AppResult<()> {
    use sea_orm::ConnectionTrait;
    let sql = match db.get_database_backend() {
        sea_orm::DbBackend::Postgres => "VACUUM (ANALYZE) patients, care_team, consents",
        _ => "ANALYZE",
    };
    db.execute_unprepared(sql).await?;
    Ok(())
}
