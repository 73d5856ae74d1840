//! FHIR R4 `Appointment` resources from opened appointments: a pure function, no database
//! and no keys. Callers decide what the viewer may see before mapping.
//!
//! JSON forms as in `records::fhir`: instants RFC 3339 in UTC with `Z`; absent optional
//! values are left out, never `null`, and no empty array or string is written.
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

use super::service::Appointment;
use super::types::AppointmentStatus;

/// The FHIR `Appointment.status` of ours: SCHEDULED is `booked`, COMPLETED `fulfilled`,
/// CANCELLED `cancelled`, NO_SHOW `noshow`.
pub fn status(s: AppointmentStatus) -> &'static str {
    match s {
        AppointmentStatus::Scheduled => "booked",
        AppointmentStatus::Completed => "fulfilled",
        AppointmentStatus::Cancelled => "cancelled",
        AppointmentStatus::NoShow => "noshow",
    }
}

/// The appointment as a FHIR R4 `Appointment`: status, start and end, the patient and the
/// provider (as `Practitioner`, the id records use for authors) as participants who
/// accepted, the reason as `reasonCode.text`, the care team's notes as `comment` and a
/// cancellation's reason as `cancelationReason.text`.
pub fn resource(a: &Appointment) -> Value {
    let row = &a.row;
    let mut r = json!({
        "resourceType": "Appointment",
        "id": row.id.to_string(),
        "meta": {
            "versionId": row.version.to_string(),
            "lastUpdated": instant(&row.updated_at),
        },
        "status": status(a.status),
        "start": instant(&row.starts_at),
        "end": instant(&row.ends_at),
        "minutesDuration": row.duration_minutes,
        "created": instant(&row.created_at),
        "participant": [
            {
                "actor": { "reference": format!("Patient/{}", row.patient_id) },
                "required": "required",
                "status": "accepted",
            },
            {
                "actor": { "reference": format!("Practitioner/{}", row.provider_id) },
                "required": "required",
                "status": "accepted",
            },
        ],
    });
    if let Some(reason) = text(Some(&a.reason)) {
        r["reasonCode"] = json!([{ "text": reason }]);
    }
    if let Some(notes) = text(a.notes.as_deref()) {
        r["comment"] = notes.into();
    }
    if let Some(why) = text(a.cancel_reason.as_deref()) {
        r["cancelationReason"] = json!({ "text": why });
    }
    r
}

/// An optional text, trimmed, absent when empty.
fn text(s: Option<&str>) -> Option<&str> {
    s.map(str::trim).filter(|t| !t.is_empty())
}

/// FHIR `instant`/`dateTime`: RFC 3339 in UTC with `Z`, fractional seconds only when present.
fn instant(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use uuid::Uuid;

    use super::*;

    const PATIENT: Uuid = Uuid::from_u128(0x1111_1111_1111_4111_8111_1111_1111_1111);
    const PROVIDER: Uuid = Uuid::from_u128(0x3333_3333_3333_4333_8333_3333_3333_3333);
    const ID: Uuid = Uuid::from_u128(0x5555_5555_5555_4555_8555_5555_5555_5555);

    fn appointment(s: AppointmentStatus) -> Appointment {
        let at = Utc.with_ymd_and_hms(2026, 12, 7, 9, 0, 0).unwrap();
        Appointment {
            row: entity::appointments::Model {
                id: ID,
                patient_id: PATIENT,
                provider_id: PROVIDER,
                starts_at: at,
                ends_at: at + chrono::TimeDelta::minutes(30),
                duration_minutes: 30,
                status: s.as_str().to_owned(),
                reason_enc: Vec::new(),
                notes_enc: None,
                cancel_reason_enc: None,
                version: 2,
                created_by: Uuid::nil(),
                created_at: at - chrono::TimeDelta::days(3),
                updated_by: Uuid::nil(),
                updated_at: at - chrono::TimeDelta::days(1),
            },
            status: s,
            reason: "Demo follow-up".into(),
            notes: None,
            cancel_reason: None,
        }
    }

    #[test]
    fn statuses_map_to_fhir_codes() {
        for (ours, fhir) in [
            (AppointmentStatus::Scheduled, "booked"),
            (AppointmentStatus::Completed, "fulfilled"),
            (AppointmentStatus::Cancelled, "cancelled"),
            (AppointmentStatus::NoShow, "noshow"),
        ] {
            assert_eq!(resource(&appointment(ours))["status"], fhir);
        }
    }

    #[test]
    fn an_appointment_names_its_times_participants_and_reason() {
        let r = resource(&appointment(AppointmentStatus::Scheduled));
        assert_eq!(r["resourceType"], "Appointment");
        assert_eq!(r["id"], ID.to_string());
        assert_eq!(r["meta"]["versionId"], "2");
        assert_eq!(r["start"], "2026-12-07T09:00:00Z");
        assert_eq!(r["end"], "2026-12-07T09:30:00Z");
        assert_eq!(r["minutesDuration"], 30);
        assert_eq!(
            r["participant"][0]["actor"]["reference"],
            format!("Patient/{PATIENT}")
        );
        assert_eq!(
            r["participant"][1]["actor"]["reference"],
            format!("Practitioner/{PROVIDER}")
        );
        assert_eq!(r["participant"][1]["status"], "accepted");
        assert_eq!(r["reasonCode"], json!([{ "text": "Demo follow-up" }]));
        // Nothing absent is written as null.
        assert!(r.get("comment").is_none() && r.get("cancelationReason").is_none());
    }

    #[test]
    fn notes_and_a_cancellation_reason_are_kept() {
        let mut a = appointment(AppointmentStatus::Cancelled);
        a.notes = Some("Demo note".into());
        a.cancel_reason = Some("Demo clash".into());
        let r = resource(&a);
        assert_eq!(r["comment"], "Demo note");
        assert_eq!(r["cancelationReason"]["text"], "Demo clash");
    }
}
