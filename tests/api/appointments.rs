//! Providers, care teams and appointments over HTTP: the directory, schedules and time off,
//! free slots (across a daylight-saving change), booking rights per role, the lifecycle and
//! its checks, no double booking under concurrency, idempotency, audit rows, ciphertext at
//! rest, and the statement count of a provider's calendar.
use chrono::{DateTime, Datelike, NaiveTime, Offset, TimeDelta, TimeZone, Utc};
use sea_orm::{ConnectionTrait, Statement};
use serde_json::{Value, json};

use crate::helpers::*;
use crate::on_both_backends;

on_both_backends!(
    the_directory_care_teams_and_me,
    schedules_and_time_off_belong_to_their_provider,
    availability_is_free_time_from_now_on,
    who_may_book_read_and_change_what,
    bookings_must_fit_the_calendar,
    twenty_parallel_bookings_of_one_slot_make_one_appointment,
    idempotent_booking_books_once,
    reschedule_checks_the_version_and_transitions_are_one_way,
    a_schedule_keeps_its_local_hours_across_daylight_saving,
    reason_and_notes_are_ciphertext_at_rest,
    reads_and_writes_are_audited,
    a_calendar_of_50_costs_what_a_calendar_of_5_costs,
    concurrent_pages_of_appointments_stay_apart,
);

const BOOK: &str = r#"mutation($p: ID!, $d: ID!, $at: DateTime!, $min: Int! = 30, $why: String! = "Demo check-up", $k: String) {
  scheduleAppointment(input: { patientId: $p, providerId: $d, startsAt: $at, durationMinutes: $min, reason: $why }, idempotencyKey: $k) {
    id status startsAt endsAt durationMinutes reason version provider { id displayName } } }"#;
const SLOTS: &str = "query($d: ID!, $from: DateTime!, $to: DateTime!) { providerAvailability(providerId: $d, from: $from, to: $to) { startsAt endsAt } }";
const ONE: &str = "query($id: ID!) { appointment(id: $id) { id status reason notes cancellationReason version startsAt patient { givenName } provider { displayName } } }";
const RESCHEDULE: &str = "mutation($id: ID!, $v: Int!, $at: DateTime!) { rescheduleAppointment(id: $id, expectedVersion: $v, startsAt: $at) { id version startsAt endsAt status } }";
const CANCEL: &str = r#"mutation($id: ID!, $why: String! = "Demo: the patient is travelling") { cancelAppointment(id: $id, reason: $why) { id status version cancellationReason } }"#;
const COMPLETE: &str = "mutation($id: ID!, $n: String) { completeAppointment(id: $id, notes: $n) { id status notes version } }";
const NO_SHOW: &str = "mutation($id: ID!) { markNoShow(id: $id) { id status version } }";
const SET_SCHEDULE: &str = "mutation($d: ID!, $i: SetScheduleInput!) { setSchedule(providerId: $d, input: $i) { id timeZone slotMinutes weeklyHours { weekday start end } } }";
const TIME_OFF: &str = r#"mutation($d: ID!, $from: DateTime!, $to: DateTime!) { addTimeOff(providerId: $d, from: $from, to: $to, reason: "Demo conference") { id startsAt endsAt reason } }"#;
const CALENDAR: &str = "query($from: DateTime!, $to: DateTime!) { me { provider { schedule(from: $from, to: $to) { id startsAt status patient { givenName } provider { displayName } } } } }";
const APPOINTMENTS: &str = "query($p: ID!, $s: AppointmentStatus, $first: Int! = 20, $after: String) { patient(id: $p) { appointments(status: $s, first: $first, after: $after) { totalCount pageInfo { hasNextPage endCursor } edges { node { id status startsAt reason } } } } }";
const OPEN_BREAK_GLASS: &str = "mutation($p: ID!) { openEmergencyAccess(patientId: $p, reason: \"unconscious in the emergency room\") { expiresAt } }";

/// The demo people, by id.
struct Ids {
    p1: String,
    p2: String,
    doctor: String,
    doctor2: String,
}

async fn ids(app: &TestApp) -> Ids {
    Ids {
        p1: app.patient_id(PATIENT).await,
        p2: app.patient_id(PATIENT2).await,
        doctor: app.provider_id(DOCTOR).await,
        doctor2: app.provider_id(DOCTOR2).await,
    }
}

fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339()
}

fn time(v: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(v.as_str().unwrap_or_else(|| panic!("not a time: {v}")))
        .unwrap()
        .with_timezone(&Utc)
}

/// Free slot starts of a provider in `[from, to)`, asked as `token`.
async fn free(
    app: &TestApp,
    token: &str,
    provider: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Vec<DateTime<Utc>> {
    let r = app
        .gql(
            Some(token),
            SLOTS,
            json!({ "d": provider, "from": iso(from), "to": iso(to) }),
        )
        .await;
    r["data"]["providerAvailability"]
        .as_array()
        .unwrap_or_else(|| panic!("no slots: {r}"))
        .iter()
        .map(|s| time(&s["startsAt"]))
        .collect()
}

/// The demo doctor's free slots over the next four weeks, from an hour from now (so that
/// none starts while a test books it).
async fn doctor_slots(app: &TestApp, token: &str, doctor: &str) -> Vec<DateTime<Utc>> {
    let from = Utc::now() + TimeDelta::hours(1);
    free(app, token, doctor, from, from + TimeDelta::days(28)).await
}

async fn book(app: &TestApp, token: &str, p: &str, d: &str, at: DateTime<Utc>) -> Value {
    app.gql(Some(token), BOOK, json!({ "p": p, "d": d, "at": iso(at) }))
        .await
}

/// Book and return the appointment's id (the booking must succeed).
async fn booked(app: &TestApp, token: &str, p: &str, d: &str, at: DateTime<Utc>) -> String {
    let r = book(app, token, p, d, at).await;
    assert!(r["errors"].is_null(), "{r}");
    r["data"]["scheduleAppointment"]["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn count_rows(app: &TestApp, sql: &str) -> i64 {
    let db = &app.state.db;
    let row = db
        .query_one(Statement::from_string(db.get_database_backend(), sql))
        .await
        .unwrap()
        .unwrap();
    row.try_get::<i64>("", "n").unwrap()
}

fn every_day_9_to_5(tz: &str, slot: i32) -> Value {
    let days = [
        "MONDAY",
        "TUESDAY",
        "WEDNESDAY",
        "THURSDAY",
        "FRIDAY",
        "SATURDAY",
        "SUNDAY",
    ];
    json!({
        "timeZone": tz,
        "slotMinutes": slot,
        "weekly": days.iter().map(|d| json!({ "weekday": d, "start": "09:00", "end": "17:00" })).collect::<Vec<_>>(),
    })
}

async fn the_directory_care_teams_and_me(b: Backend) {
    let app = spawn_app(b).await;
    let ids = ids(&app).await;
    let q = "query($f: ProviderFilter, $first: Int! = 20, $after: String) { providers(filter: $f, first: $first, after: $after) { totalCount pageInfo { hasNextPage endCursor } edges { node { id displayName specialty timeZone } } } }";
    // Any signed-in user reads the directory, researchers included; nobody else.
    for who in [PATIENT, DOCTOR2, ADMIN, RESEARCHER] {
        let t = app.token(who).await;
        let r = app.gql(Some(&t), q, json!({})).await;
        assert!(r["errors"].is_null(), "{who}: {r}");
        assert_eq!(r["data"]["providers"]["totalCount"], 2, "{who}: {r}");
    }
    let r = app.gql(None, q, json!({})).await;
    assert_eq!(code(&r), Some("UNAUTHENTICATED"), "{r}");
    let t = app.token(PATIENT).await;
    // Names match anywhere, in any case; specialties whole, in any case.
    let r = app
        .gql(Some(&t), q, json!({ "f": { "name": "DEMO doc" } }))
        .await;
    let edges = r["data"]["providers"]["edges"].as_array().unwrap().clone();
    assert_eq!(edges.len(), 1, "{r}");
    let n = &edges[0]["node"];
    assert_eq!(n["displayName"], "Dr. Demo Doctor");
    assert_eq!(n["specialty"], "Family medicine");
    assert_eq!(n["timeZone"], "Europe/Berlin");
    let r = app
        .gql(Some(&t), q, json!({ "f": { "specialty": "cardiology" } }))
        .await;
    assert_eq!(
        r["data"]["providers"]["edges"][0]["node"]["id"], ids.doctor2,
        "{r}"
    );
    assert!(r["data"]["providers"]["edges"][0]["node"]["timeZone"].is_null());
    // LIKE wildcards are plain characters.
    let r = app.gql(Some(&t), q, json!({ "f": { "name": "%" } })).await;
    assert_eq!(r["data"]["providers"]["totalCount"], 0, "{r}");
    // Paged by name with opaque cursors.
    let r = app.gql(Some(&t), q, json!({ "first": 1 })).await;
    let page = &r["data"]["providers"];
    assert_eq!(page["pageInfo"]["hasNextPage"], true, "{r}");
    assert_eq!(page["edges"][0]["node"]["displayName"], "Dr. Demo Doctor");
    let r = app
        .gql(
            Some(&t),
            q,
            json!({ "first": 1, "after": page["pageInfo"]["endCursor"] }),
        )
        .await;
    let page = &r["data"]["providers"];
    assert_eq!(page["edges"][0]["node"]["displayName"], "Dr. Demo Second");
    assert_eq!(page["pageInfo"]["hasNextPage"], false);

    // The care team, as visible as the patient is.
    let team = "query($p: ID!) { patient(id: $p) { careTeam { displayName specialty } } }";
    for who in [PATIENT, DOCTOR, ADMIN] {
        let t = app.token(who).await;
        let r = app.gql(Some(&t), team, json!({ "p": ids.p1 })).await;
        assert_eq!(
            r["data"]["patient"]["careTeam"],
            json!([{ "displayName": "Dr. Demo Doctor", "specialty": "Family medicine" }]),
            "{who}: {r}"
        );
    }
    for who in [PATIENT2, DOCTOR2] {
        let t = app.token(who).await;
        let r = app.gql(Some(&t), team, json!({ "p": ids.p1 })).await;
        assert_eq!(code(&r), Some("NOT_FOUND"), "{who}: {r}");
    }
    let t = app.token(PATIENT2).await;
    let r = app.gql(Some(&t), team, json!({ "p": ids.p2 })).await;
    assert_eq!(r["data"]["patient"]["careTeam"], json!([]), "{r}");
    // A page of patients loads its care teams in one batch.
    let admin = app.token(ADMIN).await;
    let r = app
        .gql(
            Some(&admin),
            "{ patients(first: 10) { edges { node { careTeam { id } } } } }",
            json!({}),
        )
        .await;
    assert!(r["errors"].is_null(), "{r}");

    // Me.provider: a provider's own entry, with their week; nothing for others.
    let me = "{ me { provider { id displayName slotMinutes weeklyHours { weekday start end } } } }";
    let doc = app.token(DOCTOR).await;
    let r = app.gql(Some(&doc), me, json!({})).await;
    let p = &r["data"]["me"]["provider"];
    assert_eq!(p["id"], ids.doctor, "{r}");
    assert_eq!(p["slotMinutes"], 30);
    let week = p["weeklyHours"].as_array().unwrap();
    assert_eq!(week.len(), 10, "{r}");
    assert_eq!(
        week[0],
        json!({ "weekday": "MONDAY", "start": "09:00", "end": "12:00" })
    );
    let pat = app.token(PATIENT).await;
    let r = app.gql(Some(&pat), me, json!({})).await;
    assert!(r["errors"].is_null(), "{r}");
    assert!(r["data"]["me"]["provider"].is_null(), "{r}");

    // README's example, as written there.
    let readme = include_str!("../../README.md");
    let start = readme.find("query Visits").expect("README example");
    let example = &readme[start..start + readme[start..].find("```").unwrap()];
    let now = Utc::now();
    let r = app
        .gql(
            Some(&pat),
            example,
            json!({ "id": ids.p1, "doctor": ids.doctor, "from": iso(now), "to": iso(now + TimeDelta::days(14)) }),
        )
        .await;
    assert!(r["errors"].is_null(), "{r}");
    let p = &r["data"]["patient"];
    assert_eq!(p["careTeam"][0]["timeZone"], "Europe/Berlin", "{r}");
    // The seeded visits: one completed, two to come.
    assert_eq!(
        p["appointments"]["edges"].as_array().unwrap().len(),
        3,
        "{r}"
    );
    assert!(
        !r["data"]["providerAvailability"]
            .as_array()
            .unwrap()
            .is_empty()
    );
}

async fn schedules_and_time_off_belong_to_their_provider(b: Backend) {
    let app = spawn_app(b).await;
    let ids = ids(&app).await;
    let input = every_day_9_to_5("America/New_York", 20);
    let set = |d: &str, i: Value| json!({ "d": d, "i": i });
    // The provider themself and ADMIN; nobody else.
    for (who, provider, want) in [
        (DOCTOR2, &ids.doctor2, None),
        (ADMIN, &ids.doctor2, None),
        (DOCTOR, &ids.doctor2, Some("FORBIDDEN")),
        (PATIENT, &ids.doctor, Some("FORBIDDEN")),
        (RESEARCHER, &ids.doctor, Some("FORBIDDEN")),
    ] {
        let t = app.token(who).await;
        let r = app
            .gql(Some(&t), SET_SCHEDULE, set(provider, input.clone()))
            .await;
        assert_eq!(code(&r), want, "{who}: {r}");
        if want.is_none() {
            let p = &r["data"]["setSchedule"];
            assert_eq!(p["timeZone"], "America/New_York", "{r}");
            assert_eq!(p["slotMinutes"], 20);
            assert_eq!(p["weeklyHours"].as_array().unwrap().len(), 7);
        }
    }
    assert!(
        app.audit_count("action = 'provider.set_schedule' AND outcome = 'SUCCESS'")
            .await
            == 2
    );
    assert!(
        app.audit_count("action = 'provider.set_schedule' AND outcome = 'DENIED'")
            .await
            >= 1
    );
    // Refused inputs: VALIDATION naming the field, never echoing the value.
    let doc2 = app.token(DOCTOR2).await;
    let mut bad_zone = input.clone();
    bad_zone["timeZone"] = json!("Mars/Olympus_Mons");
    let mut bad_slot = input.clone();
    bad_slot["slotMinutes"] = json!(3);
    let mut bad_time = input.clone();
    bad_time["weekly"][0]["start"] = json!("9am");
    let mut overlap = input.clone();
    overlap["weekly"]
        .as_array_mut()
        .unwrap()
        .push(json!({ "weekday": "MONDAY", "start": "16:00", "end": "18:00" }));
    let mut empty = input.clone();
    empty["weekly"][0]["end"] = json!("09:00");
    for (bad, field, secret) in [
        (bad_zone, "timeZone", "Mars"),
        (bad_slot, "slotMinutes", ""),
        (bad_time, "weekly", "9am"),
        (overlap, "weekly", ""),
        (empty, "weekly", ""),
    ] {
        let r = app
            .gql(Some(&doc2), SET_SCHEDULE, set(&ids.doctor2, bad))
            .await;
        assert_eq!(code(&r), Some("VALIDATION"), "{field}: {r}");
        assert_eq!(
            r["errors"][0]["extensions"]["fields"],
            json!([field]),
            "{r}"
        );
        if !secret.is_empty() {
            assert!(!r.to_string().contains(secret), "input echoed: {r}");
        }
    }

    // Time off: the provider themself or ADMIN; its slots disappear, bookings are refused.
    let doc = app.token(DOCTOR).await;
    let slots = doctor_slots(&app, &doc, &ids.doctor).await;
    let day = slots[30];
    let (from, to) = (day, day + TimeDelta::hours(2));
    let off = json!({ "d": ids.doctor, "from": iso(from), "to": iso(to) });
    for who in [DOCTOR2, PATIENT] {
        let t = app.token(who).await;
        let r = app.gql(Some(&t), TIME_OFF, off.clone()).await;
        assert_eq!(code(&r), Some("FORBIDDEN"), "{who}: {r}");
    }
    let r = app.gql(Some(&doc), TIME_OFF, off).await;
    assert_eq!(r["data"]["addTimeOff"]["reason"], "Demo conference", "{r}");
    let after = doctor_slots(&app, &doc, &ids.doctor).await;
    assert!(
        after
            .iter()
            .all(|s| *s + TimeDelta::minutes(30) <= from || *s >= to)
    );
    assert!(after.len() < slots.len());
    let r = book(&app, &doc, &ids.p1, &ids.doctor, from).await;
    assert_eq!(code(&r), Some("VALIDATION"), "{r}");
    assert_eq!(r["errors"][0]["extensions"]["fields"], json!(["startsAt"]));
    // Time off that is over already, or inverted, is refused.
    let now = Utc::now();
    for (f, t) in [
        (now - TimeDelta::days(2), now - TimeDelta::days(1)),
        (now + TimeDelta::days(2), now + TimeDelta::days(1)),
    ] {
        let r = app
            .gql(
                Some(&doc),
                TIME_OFF,
                json!({ "d": ids.doctor, "from": iso(f), "to": iso(t) }),
            )
            .await;
        assert_eq!(code(&r), Some("VALIDATION"), "{r}");
    }
    assert_eq!(
        app.audit_count("action = 'provider.add_time_off' AND outcome = 'SUCCESS'")
            .await,
        1
    );
    // The label stays out of the audit log.
    assert_eq!(app.audit_count("detail LIKE '%Demo conference%'").await, 0);
}

async fn availability_is_free_time_from_now_on(b: Backend) {
    let app = spawn_app(b).await;
    let ids = ids(&app).await;
    let now = Utc::now();
    let pat = app.token(PATIENT).await;
    // The window: after `from`, at most 31 days.
    for (from, to) in [
        (now, now),
        (now + TimeDelta::days(2), now + TimeDelta::days(1)),
        (now, now + TimeDelta::days(31) + TimeDelta::minutes(1)),
    ] {
        let r = app
            .gql(
                Some(&pat),
                SLOTS,
                json!({ "d": ids.doctor, "from": iso(from), "to": iso(to) }),
            )
            .await;
        assert_eq!(code(&r), Some("VALIDATION"), "{r}");
    }
    // A patient asks about their care team only; researchers not at all; staff about anyone.
    let v = json!({ "d": ids.doctor2, "from": iso(now), "to": iso(now + TimeDelta::days(7)) });
    for (who, want) in [
        (PATIENT, Some("FORBIDDEN")),
        (PATIENT2, Some("FORBIDDEN")),
        (RESEARCHER, Some("FORBIDDEN")),
        (DOCTOR, None),
        (ADMIN, None),
    ] {
        let t = app.token(who).await;
        let r = app.gql(Some(&t), SLOTS, v.clone()).await;
        assert_eq!(code(&r), want, "{who}: {r}");
    }
    // A provider without a schedule has no slots.
    let admin = app.token(ADMIN).await;
    let r = app.gql(Some(&admin), SLOTS, v).await;
    assert_eq!(r["data"]["providerAvailability"], json!([]), "{r}");
    // Slots lie in the doctor's hours, in Berlin, never in the past, and a booking takes one.
    let past = free(
        &app,
        &pat,
        &ids.doctor,
        now - TimeDelta::days(7),
        now + TimeDelta::days(7),
    )
    .await;
    assert!(!past.is_empty());
    assert!(past.iter().all(|s| *s >= now), "a past slot was offered");
    // A fixed window, so that the two reads below see the same one.
    let (from, to) = (now + TimeDelta::hours(1), now + TimeDelta::days(28));
    let slots = free(&app, &pat, &ids.doctor, from, to).await;
    // Three weeks of 14 a day on weekdays at least, less the two seeded visits.
    assert!(slots.len() >= 15 * 14 - 2, "{}", slots.len());
    let berlin = chrono_tz::Europe::Berlin;
    for s in &slots {
        let local = s.with_timezone(&berlin);
        let t = local.time();
        assert!(local.weekday().num_days_from_monday() < 5, "{local}");
        assert!(
            (NaiveTime::from_hms_opt(9, 0, 0).unwrap()..NaiveTime::from_hms_opt(12, 0, 0).unwrap())
                .contains(&t)
                || (NaiveTime::from_hms_opt(13, 0, 0).unwrap()
                    ..NaiveTime::from_hms_opt(17, 0, 0).unwrap())
                    .contains(&t),
            "{local}"
        );
    }
    booked(&app, &pat, &ids.p1, &ids.doctor, slots[3]).await;
    let after = free(&app, &pat, &ids.doctor, from, to).await;
    assert!(!after.contains(&slots[3]));
    assert_eq!(after.len(), slots.len() - 1);
}

async fn who_may_book_read_and_change_what(b: Backend) {
    let app = spawn_app(b).await;
    let ids = ids(&app).await;
    let admin = app.token(ADMIN).await;
    // doctor2 gets hours too, so booking with them fails for rights, not for hours.
    let r = app
        .gql(
            Some(&admin),
            SET_SCHEDULE,
            json!({ "d": ids.doctor2, "i": every_day_9_to_5("Europe/Berlin", 30) }),
        )
        .await;
    assert!(r["errors"].is_null(), "{r}");
    let slots = doctor_slots(&app, &admin, &ids.doctor).await;
    let now = Utc::now();
    let slots2 = free(&app, &admin, &ids.doctor2, now, now + TimeDelta::days(14)).await;
    let pat = app.token(PATIENT).await;
    let pat2 = app.token(PATIENT2).await;
    let doc = app.token(DOCTOR).await;
    let doc2 = app.token(DOCTOR2).await;
    let res = app.token(RESEARCHER).await;

    // Booking.
    for (token, who, p, d, at, want) in [
        (
            &pat,
            "patient, own, care team",
            &ids.p1,
            &ids.doctor,
            slots[0],
            None,
        ),
        (
            &pat,
            "patient, other patient",
            &ids.p2,
            &ids.doctor,
            slots[1],
            Some("NOT_FOUND"),
        ),
        (
            &pat,
            "patient, provider outside the team",
            &ids.p1,
            &ids.doctor2,
            slots2[0],
            Some("FORBIDDEN"),
        ),
        (
            &doc,
            "doctor, care-team patient",
            &ids.p1,
            &ids.doctor,
            slots[1],
            None,
        ),
        (
            &doc,
            "doctor, other patient",
            &ids.p2,
            &ids.doctor,
            slots[2],
            Some("NOT_FOUND"),
        ),
        (
            &doc2,
            "doctor2, outside the team",
            &ids.p1,
            &ids.doctor2,
            slots2[1],
            Some("NOT_FOUND"),
        ),
        (
            &res,
            "researcher",
            &ids.p1,
            &ids.doctor,
            slots[2],
            Some("FORBIDDEN"),
        ),
        (
            &admin,
            "admin, anyone",
            &ids.p2,
            &ids.doctor2,
            slots2[2],
            None,
        ),
        (
            &pat2,
            "patient2, own, no care team",
            &ids.p2,
            &ids.doctor,
            slots[3],
            Some("FORBIDDEN"),
        ),
    ] {
        let r = book(&app, token, p, d, at).await;
        assert_eq!(code(&r), want, "{who}: {r}");
    }
    let mine = booked(&app, &pat, &ids.p1, &ids.doctor, slots[4]).await;

    // Reading one: NOT_FOUND for whoever may not see it, worded as for a missing id.
    let missing = app
        .gql(
            Some(&pat2),
            ONE,
            json!({ "id": uuid::Uuid::new_v4().to_string() }),
        )
        .await;
    assert_eq!(code(&missing), Some("NOT_FOUND"));
    for (who, want) in [
        (PATIENT, None),
        (DOCTOR, None),
        (ADMIN, None),
        (PATIENT2, Some("NOT_FOUND")),
        (DOCTOR2, Some("NOT_FOUND")),
        (RESEARCHER, Some("FORBIDDEN")),
    ] {
        let t = app.token(who).await;
        let r = app.gql(Some(&t), ONE, json!({ "id": mine })).await;
        assert_eq!(code(&r), want, "{who}: {r}");
        if want == Some("NOT_FOUND") {
            assert_eq!(r["errors"][0]["message"], missing["errors"][0]["message"]);
            assert!(
                r["data"].is_null() || r["data"]["appointment"].is_null(),
                "{r}"
            );
        }
        if want.is_none() {
            let a = &r["data"]["appointment"];
            assert_eq!(a["reason"], "Demo check-up", "{who}: {r}");
            assert_eq!(a["patient"]["givenName"], "Testy", "{who}: {r}");
            assert_eq!(a["provider"]["displayName"], "Dr. Demo Doctor");
        }
    }
    // The patient's list: the three seeded and the three booked above, soonest first.
    let r = app
        .gql(Some(&pat), APPOINTMENTS, json!({ "p": ids.p1 }))
        .await;
    let list = &r["data"]["patient"]["appointments"];
    assert_eq!(list["totalCount"], 6, "{r}");
    let starts: Vec<DateTime<Utc>> = list["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| time(&e["node"]["startsAt"]))
        .collect();
    assert!(starts.windows(2).all(|w| w[0] <= w[1]), "{r}");
    assert_eq!(list["edges"][0]["node"]["status"], "COMPLETED");
    // Paged with opaque cursors.
    let r = app
        .gql(Some(&pat), APPOINTMENTS, json!({ "p": ids.p1, "first": 4 }))
        .await;
    let info = &r["data"]["patient"]["appointments"]["pageInfo"];
    assert_eq!(info["hasNextPage"], true, "{r}");
    let r = app
        .gql(
            Some(&pat),
            APPOINTMENTS,
            json!({ "p": ids.p1, "first": 4, "after": info["endCursor"] }),
        )
        .await;
    let rest = &r["data"]["patient"]["appointments"];
    assert_eq!(rest["edges"].as_array().unwrap().len(), 2, "{r}");
    assert_eq!(time(&rest["edges"][1]["node"]["startsAt"]), starts[5]);
    let r = app
        .gql(
            Some(&pat),
            APPOINTMENTS,
            json!({ "p": ids.p1, "s": "COMPLETED" }),
        )
        .await;
    assert_eq!(r["data"]["patient"]["appointments"]["totalCount"], 1, "{r}");

    // A provider's calendar is theirs (and ADMIN's): everyone else sees free/busy only.
    let cal = "query($f: ProviderFilter, $from: DateTime!, $to: DateTime!) { providers(filter: $f) { edges { node { schedule(from: $from, to: $to) { id } } } } }";
    let window = json!({ "f": { "name": "Demo Doctor" }, "from": iso(now), "to": iso(now + TimeDelta::days(28)) });
    for (who, want) in [
        (DOCTOR, None),
        (ADMIN, None),
        (DOCTOR2, Some("FORBIDDEN")),
        (PATIENT, Some("FORBIDDEN")),
        (RESEARCHER, Some("FORBIDDEN")),
    ] {
        let t = app.token(who).await;
        let r = app.gql(Some(&t), cal, window.clone()).await;
        assert_eq!(code(&r), want, "{who}: {r}");
        if want.is_none() {
            let s = r["data"]["providers"]["edges"][0]["node"]["schedule"]
                .as_array()
                .unwrap()
                .clone();
            // Two seeded upcoming visits and three booked.
            assert_eq!(s.len(), 5, "{who}: {r}");
        }
    }

    // Changing it: the patient and the care team; PATIENT2 and doctor2 cannot find it.
    let r = app.gql(Some(&pat), ONE, json!({ "id": mine })).await;
    let v = r["data"]["appointment"]["version"].as_i64().unwrap();
    for (who, want) in [
        (PATIENT2, "NOT_FOUND"),
        (DOCTOR2, "NOT_FOUND"),
        (RESEARCHER, "FORBIDDEN"),
    ] {
        let t = app.token(who).await;
        for (q, vars) in [
            (
                RESCHEDULE,
                json!({ "id": mine, "v": v, "at": iso(slots[6]) }),
            ),
            (CANCEL, json!({ "id": mine })),
            (COMPLETE, json!({ "id": mine })),
            (NO_SHOW, json!({ "id": mine })),
        ] {
            let r = app.gql(Some(&t), q, vars).await;
            let expected = match (who, q) {
                // Completing and no-shows are for staff: the role is refused first.
                (PATIENT2, COMPLETE | NO_SHOW) => "FORBIDDEN",
                _ => want,
            };
            assert_eq!(code(&r), Some(expected), "{who}: {r}");
        }
    }
    // The patient may not mark their own visit completed or missed.
    for q in [COMPLETE, NO_SHOW] {
        let r = app.gql(Some(&pat), q, json!({ "id": mine })).await;
        assert_eq!(code(&r), Some("FORBIDDEN"), "{r}");
    }
    let r = app
        .gql(
            Some(&pat),
            RESCHEDULE,
            json!({ "id": mine, "v": v, "at": iso(slots[6]) }),
        )
        .await;
    assert_eq!(r["data"]["rescheduleAppointment"]["version"], v + 1, "{r}");
    assert_eq!(
        time(&r["data"]["rescheduleAppointment"]["startsAt"]),
        slots[6]
    );

    // Break-glass: reads, never writes.
    let r = app
        .gql(Some(&doc2), OPEN_BREAK_GLASS, json!({ "p": ids.p1 }))
        .await;
    assert!(r["errors"].is_null(), "{r}");
    let r = app.gql(Some(&doc2), ONE, json!({ "id": mine })).await;
    assert!(r["errors"].is_null(), "{r}");
    let r = app
        .gql(Some(&doc2), APPOINTMENTS, json!({ "p": ids.p1 }))
        .await;
    assert_eq!(r["data"]["patient"]["appointments"]["totalCount"], 6, "{r}");
    for (q, vars) in [
        (
            BOOK,
            json!({ "p": ids.p1, "d": ids.doctor, "at": iso(slots[7]) }),
        ),
        (
            RESCHEDULE,
            json!({ "id": mine, "v": v + 1, "at": iso(slots[8]) }),
        ),
        (CANCEL, json!({ "id": mine })),
        (COMPLETE, json!({ "id": mine })),
        (NO_SHOW, json!({ "id": mine })),
    ] {
        let r = app.gql(Some(&doc2), q, vars).await;
        assert_eq!(code(&r), Some("FORBIDDEN"), "break-glass: {r}");
    }
    assert!(
        app.audit_count("break_glass = TRUE AND action = 'appointment.read'")
            .await
            >= 2
    );

    // The care-team doctor settles it; the patient cancels another of theirs.
    let r = app
        .gql(
            Some(&doc),
            COMPLETE,
            json!({ "id": mine, "n": "Demo: reviewed, all well" }),
        )
        .await;
    assert_eq!(
        r["data"]["completeAppointment"]["status"], "COMPLETED",
        "{r}"
    );
    assert_eq!(
        r["data"]["completeAppointment"]["notes"],
        "Demo: reviewed, all well"
    );
    let other = booked(&app, &pat, &ids.p1, &ids.doctor, slots[9]).await;
    let r = app.gql(Some(&pat), CANCEL, json!({ "id": other })).await;
    assert_eq!(r["data"]["cancelAppointment"]["status"], "CANCELLED", "{r}");
    assert_eq!(
        r["data"]["cancelAppointment"]["cancellationReason"],
        "Demo: the patient is travelling"
    );
    let third = booked(&app, &doc, &ids.p1, &ids.doctor, slots[10]).await;
    let r = app.gql(Some(&admin), NO_SHOW, json!({ "id": third })).await;
    assert_eq!(r["data"]["markNoShow"]["status"], "NO_SHOW", "{r}");
}

async fn bookings_must_fit_the_calendar(b: Backend) {
    let app = spawn_app(b).await;
    let ids = ids(&app).await;
    let doc = app.token(DOCTOR).await;
    let slots = doctor_slots(&app, &doc, &ids.doctor).await;
    let now = Utc::now();
    let berlin = chrono_tz::Europe::Berlin;
    // A working day at least a day ahead, and the weekend after it.
    let ahead = *slots
        .iter()
        .find(|s| **s > now + TimeDelta::days(1))
        .unwrap();
    let weekday = ahead.with_timezone(&berlin).date_naive();
    let mut saturday = weekday;
    while saturday.weekday() != chrono::Weekday::Sat {
        saturday = saturday.succ_opt().unwrap();
    }
    let local = |d: chrono::NaiveDate, h: u32| {
        berlin
            .from_local_datetime(&d.and_hms_opt(h, 0, 0).unwrap())
            .single()
            .unwrap()
            .with_timezone(&Utc)
    };
    let cases = [
        ("weekend", json!({ "at": iso(local(saturday, 10)) })),
        ("before hours", json!({ "at": iso(local(weekday, 7)) })),
        (
            "across lunch",
            json!({ "at": iso(local(weekday, 11) + TimeDelta::minutes(30)), "min": 60 }),
        ),
        (
            "past",
            json!({ "at": iso((now - TimeDelta::days(1)).with_timezone(&Utc)) }),
        ),
        (
            "not on a minute",
            json!({ "at": iso(slots[0] + TimeDelta::seconds(30)) }),
        ),
        ("too short", json!({ "at": iso(slots[0]), "min": 3 })),
        ("too long", json!({ "at": iso(slots[0]), "min": 600 })),
        ("no reason", json!({ "at": iso(slots[0]), "why": "   " })),
    ];
    for (what, extra) in cases {
        let mut v = json!({ "p": ids.p1, "d": ids.doctor });
        for (k, val) in extra.as_object().unwrap() {
            v[k] = val.clone();
        }
        let r = app.gql(Some(&doc), BOOK, v).await;
        assert_eq!(code(&r), Some("VALIDATION"), "{what}: {r}");
    }
    // A taken slot is CONFLICT, and so is any overlap with it; a cancelled one is free again.
    let id = booked(&app, &doc, &ids.p1, &ids.doctor, slots[0]).await;
    let r = book(&app, &doc, &ids.p1, &ids.doctor, slots[0]).await;
    assert_eq!(code(&r), Some("CONFLICT"), "{r}");
    let r = app
        .gql(
            Some(&doc),
            BOOK,
            json!({ "p": ids.p1, "d": ids.doctor, "at": iso(slots[0] + TimeDelta::minutes(15)), "min": 5 }),
        )
        .await;
    assert_eq!(code(&r), Some("CONFLICT"), "{r}");
    let r = app.gql(Some(&doc), CANCEL, json!({ "id": id })).await;
    assert!(r["errors"].is_null(), "{r}");
    booked(&app, &doc, &ids.p1, &ids.doctor, slots[0]).await;
    // Rescheduling onto a taken slot is CONFLICT too; outside hours VALIDATION.
    let moving = booked(&app, &doc, &ids.p1, &ids.doctor, slots[1]).await;
    let r = app
        .gql(
            Some(&doc),
            RESCHEDULE,
            json!({ "id": moving, "v": 1, "at": iso(slots[0]) }),
        )
        .await;
    assert_eq!(code(&r), Some("CONFLICT"), "{r}");
    let r = app
        .gql(
            Some(&doc),
            RESCHEDULE,
            json!({ "id": moving, "v": 1, "at": iso(local(saturday, 10)) }),
        )
        .await;
    assert_eq!(code(&r), Some("VALIDATION"), "{r}");
    // Its own slot, moved by a quarter hour: overlapping only itself is fine.
    let r = app
        .gql(
            Some(&doc),
            RESCHEDULE,
            json!({ "id": moving, "v": 1, "at": iso(slots[1] + TimeDelta::minutes(15)) }),
        )
        .await;
    if slots[2] == slots[1] + TimeDelta::minutes(30) {
        assert!(r["errors"].is_null(), "{r}");
    }
}

async fn twenty_parallel_bookings_of_one_slot_make_one_appointment(b: Backend) {
    let app = spawn_app(b).await;
    let ids = ids(&app).await;
    let doc = app.token(DOCTOR).await;
    let slots = doctor_slots(&app, &doc, &ids.doctor).await;
    let at = slots[5];
    let before = count_rows(&app, "SELECT COUNT(*) AS n FROM appointments").await;
    let mut tasks = Vec::new();
    for i in 0..20 {
        let client = app.client.clone();
        let url = app.url.clone();
        let token = doc.clone();
        let vars =
            json!({ "p": ids.p1, "d": ids.doctor, "at": iso(at), "why": format!("Demo race {i}") });
        tasks.push(tokio::spawn(async move {
            gql_at(&client, &url, Some(&token), BOOK, vars).await
        }));
    }
    let mut ok = 0;
    let mut conflict = 0;
    for t in tasks {
        let r = t.await.unwrap();
        match code(&r) {
            None => ok += 1,
            Some("CONFLICT") => conflict += 1,
            other => panic!("unexpected {other:?}: {r}"),
        }
    }
    assert_eq!((ok, conflict), (1, 19), "{b:?}");
    let after = count_rows(&app, "SELECT COUNT(*) AS n FROM appointments").await;
    assert_eq!(after - before, 1, "{b:?}: rows");
    // On PostgreSQL the database itself refuses an overlap, whoever writes it.
    if b == Backend::Postgres {
        let db = &app.state.db;
        let sql = format!(
            "INSERT INTO appointments (id, patient_id, provider_id, starts_at, ends_at, duration_minutes, status, reason_enc, version, created_by, created_at, updated_by, updated_at) \
             SELECT gen_random_uuid(), patient_id, provider_id, starts_at + interval '10 minutes', ends_at + interval '10 minutes', 30, 'SCHEDULED', reason_enc, 1, created_by, now(), updated_by, now() \
             FROM appointments WHERE starts_at = '{}' AND status = 'SCHEDULED'",
            iso(at)
        );
        let e = db.execute_unprepared(&sql).await.unwrap_err();
        assert!(e.to_string().contains("appointments_no_overlap"), "{e}");
    }
}

async fn idempotent_booking_books_once(b: Backend) {
    let app = spawn_app(b).await;
    let ids = ids(&app).await;
    let pat = app.token(PATIENT).await;
    let slots = doctor_slots(&app, &pat, &ids.doctor).await;
    let v =
        json!({ "p": ids.p1, "d": ids.doctor, "at": iso(slots[2]), "k": "visit-2026-12-key-1" });
    let before = count_rows(&app, "SELECT COUNT(*) AS n FROM appointments").await;
    let first = app.gql(Some(&pat), BOOK, v.clone()).await;
    let again = app.gql(Some(&pat), BOOK, v.clone()).await;
    assert!(first["errors"].is_null(), "{first}");
    assert!(again["errors"].is_null(), "{again}");
    assert_eq!(
        first["data"]["scheduleAppointment"]["id"],
        again["data"]["scheduleAppointment"]["id"]
    );
    assert_eq!(
        count_rows(&app, "SELECT COUNT(*) AS n FROM appointments").await - before,
        1
    );
    // The same key with another input: CONFLICT, and nothing booked.
    let mut other = v.clone();
    other["at"] = json!(iso(slots[3]));
    let r = app.gql(Some(&pat), BOOK, other).await;
    assert_eq!(code(&r), Some("CONFLICT"), "{r}");
    let mut other = v.clone();
    other["why"] = json!("Demo another reason");
    let r = app.gql(Some(&pat), BOOK, other).await;
    assert_eq!(code(&r), Some("CONFLICT"), "{r}");
    assert_eq!(
        count_rows(&app, "SELECT COUNT(*) AS n FROM appointments").await - before,
        1
    );
    // Another user's identical key is theirs alone (and here meets the booked slot).
    let doc = app.token(DOCTOR).await;
    let r = app.gql(Some(&doc), BOOK, v).await;
    assert_eq!(code(&r), Some("CONFLICT"), "{r}");
    assert_eq!(
        app.audit_count("action = 'appointment.read' AND detail LIKE '%idempotentReplay%'")
            .await,
        1
    );
}

async fn reschedule_checks_the_version_and_transitions_are_one_way(b: Backend) {
    let app = spawn_app(b).await;
    let ids = ids(&app).await;
    let doc = app.token(DOCTOR).await;
    let slots = doctor_slots(&app, &doc, &ids.doctor).await;
    let id = booked(&app, &doc, &ids.p1, &ids.doctor, slots[0]).await;
    let r = app
        .gql(
            Some(&doc),
            RESCHEDULE,
            json!({ "id": id, "v": 1, "at": iso(slots[1]) }),
        )
        .await;
    let moved = &r["data"]["rescheduleAppointment"];
    assert_eq!(moved["version"], 2, "{r}");
    assert_eq!(
        time(&moved["endsAt"]) - time(&moved["startsAt"]),
        TimeDelta::minutes(30)
    );
    // The old slot is free again.
    assert!(
        doctor_slots(&app, &doc, &ids.doctor)
            .await
            .contains(&slots[0])
    );
    // A stale version: CONFLICT, and nothing moves.
    let r = app
        .gql(
            Some(&doc),
            RESCHEDULE,
            json!({ "id": id, "v": 1, "at": iso(slots[2]) }),
        )
        .await;
    assert_eq!(code(&r), Some("CONFLICT"), "{r}");
    let r = app.gql(Some(&doc), ONE, json!({ "id": id })).await;
    assert_eq!(time(&r["data"]["appointment"]["startsAt"]), slots[1], "{r}");
    // Settled appointments do not change again.
    let r = app.gql(Some(&doc), COMPLETE, json!({ "id": id })).await;
    assert_eq!(r["data"]["completeAppointment"]["version"], 3, "{r}");
    for (q, vars) in [
        (CANCEL, json!({ "id": id })),
        (NO_SHOW, json!({ "id": id })),
        (COMPLETE, json!({ "id": id })),
        (RESCHEDULE, json!({ "id": id, "v": 3, "at": iso(slots[2]) })),
    ] {
        let r = app.gql(Some(&doc), q, vars).await;
        assert_eq!(code(&r), Some("VALIDATION"), "{r}");
    }
    let cancelled = booked(&app, &doc, &ids.p1, &ids.doctor, slots[3]).await;
    let r = app
        .gql(Some(&doc), CANCEL, json!({ "id": cancelled }))
        .await;
    assert!(r["errors"].is_null(), "{r}");
    for (q, vars) in [
        (CANCEL, json!({ "id": cancelled })),
        (COMPLETE, json!({ "id": cancelled })),
        (NO_SHOW, json!({ "id": cancelled })),
        (
            RESCHEDULE,
            json!({ "id": cancelled, "v": 2, "at": iso(slots[4]) }),
        ),
    ] {
        let r = app.gql(Some(&doc), q, vars).await;
        assert_eq!(code(&r), Some("VALIDATION"), "{r}");
    }
    // A cancellation must say why.
    let open = booked(&app, &doc, &ids.p1, &ids.doctor, slots[5]).await;
    let r = app
        .gql(Some(&doc), CANCEL, json!({ "id": open, "why": "no" }))
        .await;
    assert_eq!(code(&r), Some("VALIDATION"), "{r}");
    let r = app.gql(Some(&doc), NO_SHOW, json!({ "id": open })).await;
    assert_eq!(r["data"]["markNoShow"]["status"], "NO_SHOW", "{r}");
    let r = app.gql(Some(&doc), CANCEL, json!({ "id": open })).await;
    assert_eq!(code(&r), Some("VALIDATION"), "{r}");
}

/// The first change of Berlin's UTC offset after `after`: the local date it happens on.
fn next_berlin_change(after: DateTime<Utc>) -> chrono::NaiveDate {
    let berlin = chrono_tz::Europe::Berlin;
    let offset = |d: chrono::NaiveDate| {
        berlin
            .from_local_datetime(&d.and_hms_opt(12, 0, 0).unwrap())
            .single()
            .unwrap()
            .offset()
            .fix()
    };
    let mut d = after.with_timezone(&berlin).date_naive();
    for _ in 0..400 {
        let next = d.succ_opt().unwrap();
        if offset(next) != offset(d) {
            return next;
        }
        d = next;
    }
    panic!("no daylight-saving change within a year");
}

async fn a_schedule_keeps_its_local_hours_across_daylight_saving(b: Backend) {
    let app = spawn_app(b).await;
    let ids = ids(&app).await;
    let admin = app.token(ADMIN).await;
    let r = app
        .gql(
            Some(&admin),
            SET_SCHEDULE,
            json!({ "d": ids.doctor2, "i": every_day_9_to_5("Europe/Berlin", 60) }),
        )
        .await;
    assert!(r["errors"].is_null(), "{r}");
    // Past slots are not offered: the next change that leaves a whole day before it.
    let change = next_berlin_change(Utc::now() + TimeDelta::days(2));
    let berlin = chrono_tz::Europe::Berlin;
    let day_before = change.pred_opt().unwrap();
    let day_after = change.succ_opt().unwrap();
    let midnight = |d: chrono::NaiveDate| {
        berlin
            .from_local_datetime(&d.and_hms_opt(0, 0, 0).unwrap())
            .earliest()
            .unwrap()
            .with_timezone(&Utc)
    };
    let from = midnight(day_before);
    let to = midnight(day_after.succ_opt().unwrap());
    let slots = free(&app, &admin, &ids.doctor2, from, to).await;
    assert_eq!(slots.len(), 3 * 8, "{slots:?}");
    for day in [day_before, change, day_after] {
        let starts: Vec<String> = slots
            .iter()
            .map(|s| s.with_timezone(&berlin))
            .filter(|s| s.date_naive() == day)
            .map(|s| s.format("%H:%M").to_string())
            .collect();
        assert_eq!(
            starts,
            [
                "09:00", "10:00", "11:00", "12:00", "13:00", "14:00", "15:00", "16:00"
            ],
            "{day}"
        );
    }
    // The same local hour is another UTC hour on either side.
    let first_utc = |d: chrono::NaiveDate| {
        *slots
            .iter()
            .find(|s| s.with_timezone(&berlin).date_naive() == d)
            .unwrap()
    };
    let before = first_utc(day_before);
    let after = first_utc(day_after);
    let shift = (after - TimeDelta::days(2)) - before;
    assert_eq!(shift.num_minutes().abs(), 60, "{before} / {after}");
    // Bookings follow the local hours: 09:00 local after the change fits; the same UTC
    // clock time on the day before is an hour outside (or inside) the hours there.
    let r = book(&app, &admin, &ids.p1, &ids.doctor2, after).await;
    assert!(r["errors"].is_null(), "{r}");
    let same_utc_before = after - TimeDelta::days(2);
    let r = book(&app, &admin, &ids.p1, &ids.doctor2, same_utc_before).await;
    if same_utc_before < before {
        assert_eq!(code(&r), Some("VALIDATION"), "{r}");
    } else {
        assert!(r["errors"].is_null(), "{r}");
    }
}

async fn reason_and_notes_are_ciphertext_at_rest(b: Backend) {
    let app = spawn_app(b).await;
    let ids = ids(&app).await;
    let doc = app.token(DOCTOR).await;
    let slots = doctor_slots(&app, &doc, &ids.doctor).await;
    let r = app
        .gql(
            Some(&doc),
            BOOK,
            json!({ "p": ids.p1, "d": ids.doctor, "at": iso(slots[0]), "why": "Fixturalgia since Tuesday" }),
        )
        .await;
    let a = r["data"]["scheduleAppointment"]["id"].clone();
    assert!(a.is_string(), "{r}");
    let r = app
        .gql(
            Some(&doc),
            COMPLETE,
            json!({ "id": a, "n": "Fixturonotes: ECG unremarkable" }),
        )
        .await;
    assert!(r["errors"].is_null(), "{r}");
    let c = booked(&app, &doc, &ids.p1, &ids.doctor, slots[1]).await;
    let r = app
        .gql(
            Some(&doc),
            CANCEL,
            json!({ "id": c, "why": "Fixturocancel: admitted elsewhere" }),
        )
        .await;
    assert!(r["errors"].is_null(), "{r}");
    let db = &app.state.db;
    let rows = db
        .query_all(Statement::from_string(
            db.get_database_backend(),
            "SELECT reason_enc, notes_enc, cancel_reason_enc FROM appointments",
        ))
        .await
        .unwrap();
    assert!(rows.len() >= 5);
    let mut notes = 0;
    for row in rows {
        for col in ["reason_enc", "notes_enc", "cancel_reason_enc"] {
            let Some(v) = row.try_get::<Option<Vec<u8>>>("", col).unwrap() else {
                continue;
            };
            if col != "reason_enc" {
                notes += 1;
            }
            let text = String::from_utf8_lossy(&v);
            for plain in ["Fixtur", "ECG", "Demo", "Tuesday"] {
                assert!(!text.contains(plain), "{col} holds {plain}");
            }
        }
    }
    assert_eq!(notes, 2);
    // And they read back.
    let r = app.gql(Some(&doc), ONE, json!({ "id": a })).await;
    assert_eq!(
        r["data"]["appointment"]["reason"],
        "Fixturalgia since Tuesday"
    );
    assert_eq!(
        r["data"]["appointment"]["notes"],
        "Fixturonotes: ECG unremarkable"
    );
}

async fn reads_and_writes_are_audited(b: Backend) {
    let app = spawn_app(b).await;
    let ids = ids(&app).await;
    let doc = app.token(DOCTOR).await;
    let pat = app.token(PATIENT).await;
    let slots = doctor_slots(&app, &doc, &ids.doctor).await;
    let id = booked(&app, &pat, &ids.p1, &ids.doctor, slots[0]).await;
    let one = |action: &str| {
        format!("action = '{action}' AND resource_id = '{id}' AND outcome = 'SUCCESS'")
    };
    assert_eq!(app.audit_count(&one("appointment.create")).await, 1);
    let r = app
        .gql(
            Some(&doc),
            RESCHEDULE,
            json!({ "id": id, "v": 1, "at": iso(slots[1]) }),
        )
        .await;
    assert!(r["errors"].is_null(), "{r}");
    assert_eq!(app.audit_count(&one("appointment.reschedule")).await, 1);
    let r = app.gql(Some(&pat), CANCEL, json!({ "id": id })).await;
    assert!(r["errors"].is_null(), "{r}");
    assert_eq!(app.audit_count(&one("appointment.cancel")).await, 1);
    // A single read: one row naming it.
    let before = app.audit_count("action = 'appointment.read'").await;
    let r = app.gql(Some(&doc), ONE, json!({ "id": id })).await;
    assert!(r["errors"].is_null(), "{r}");
    assert_eq!(
        app.audit_count("action = 'appointment.read'").await,
        before + 1
    );
    assert_eq!(app.audit_count(&one("appointment.read")).await, 1);
    // The appointment's patient is a patient read like any other.
    assert!(
        app.audit_count("action = 'patient.read' AND detail LIKE '%Appointment.patient%'")
            .await
            >= 1
    );
    // A list read: one row naming every appointment shown, and nothing sealed.
    let before = app.audit_count("action = 'appointment.read'").await;
    let r = app
        .gql(Some(&pat), APPOINTMENTS, json!({ "p": ids.p1 }))
        .await;
    assert!(r["errors"].is_null(), "{r}");
    assert_eq!(
        app.audit_count("action = 'appointment.read'").await,
        before + 1
    );
    let listed = format!(
        "action = 'appointment.read' AND resource_type = 'patient' AND detail LIKE '%{id}%'"
    );
    assert_eq!(app.audit_count(&listed).await, 1);
    // The calendar: one row, resource the provider, naming the appointments.
    let now = Utc::now();
    let before = app.audit_count("action = 'appointment.read'").await;
    let r = app
        .gql(
            Some(&doc),
            CALENDAR,
            json!({ "from": iso(now), "to": iso(now + TimeDelta::days(28)) }),
        )
        .await;
    assert!(r["errors"].is_null(), "{r}");
    assert_eq!(
        app.audit_count("action = 'appointment.read'").await,
        before + 1
    );
    assert_eq!(
        app.audit_count(&format!(
            "action = 'appointment.read' AND resource_type = 'provider' AND resource_id = '{}'",
            ids.doctor
        ))
        .await,
        1
    );
    assert_eq!(
        app.audit_count("action LIKE 'appointment.%' AND detail LIKE '%Demo%'")
            .await,
        0
    );
    // Refusals are audited too.
    let pat2 = app.token(PATIENT2).await;
    let r = app.gql(Some(&pat2), ONE, json!({ "id": id })).await;
    assert_eq!(code(&r), Some("NOT_FOUND"));
    assert!(
        app.audit_count("action = 'appointment.read' AND outcome = 'DENIED'")
            .await
            >= 1
    );
}

/// At most this many data statements for a calendar read, so that a regression to a query
/// per row fails even if it cost the same at both sizes.
const SMALL: u64 = 8;

async fn a_calendar_of_50_costs_what_a_calendar_of_5_costs(b: Backend) {
    let app = spawn_app(b).await;
    let ids = ids(&app).await;
    let doc = app.token(DOCTOR).await;
    let now = Utc::now();
    let (from, to) = (now, now + TimeDelta::days(30));
    let slots = free(&app, &doc, &ids.doctor, now + TimeDelta::hours(1), to).await;
    assert!(slots.len() >= 48, "{}", slots.len());
    // Two seeded visits lie ahead; three more make five.
    for s in &slots[..3] {
        booked(&app, &doc, &ids.p1, &ids.doctor, *s).await;
    }
    let vars = json!({ "from": iso(from), "to": iso(to) });
    let measure = |vars: Value| {
        let app = &app;
        let doc = &doc;
        async move {
            let (d0, a0) = app.state.sql.snapshot();
            let r = app.gql(Some(doc), CALENDAR, vars).await;
            let (d1, a1) = app.state.sql.snapshot();
            assert!(r["errors"].is_null(), "{r}");
            (d1 - d0, a1 - a0, r)
        }
    };
    // Once unmeasured: the first sight of an operation may cost what later ones do not.
    measure(vars.clone()).await;
    let (few, few_audit, r) = measure(vars.clone()).await;
    let cal = r["data"]["me"]["provider"]["schedule"].as_array().unwrap();
    assert_eq!(cal.len(), 5, "{r}");
    for s in &slots[3..48] {
        booked(&app, &doc, &ids.p1, &ids.doctor, *s).await;
    }
    let (many, many_audit, r) = measure(vars).await;
    let cal = r["data"]["me"]["provider"]["schedule"].as_array().unwrap();
    assert_eq!(cal.len(), 50, "{r}");
    assert!(cal.iter().all(|a| a["patient"]["givenName"] == "Testy"
        && a["provider"]["displayName"] == "Dr. Demo Doctor"));
    println!(
        "{b:?}: a calendar with provider and patient names: 5 appointments: {few} data, {few_audit} audit statements; \
         50 appointments: {many} data, {many_audit} audit statements"
    );
    assert_eq!(
        few, many,
        "{b:?}: data statements grow with the appointments: {few} for 5, {many} for 50"
    );
    assert!(
        many <= SMALL,
        "{b:?}: {many} data statements for a calendar"
    );
}

/// A page of appointments with every argument the coalesced read carries per page.
const PAGE: &str = "query($p: ID!, $s: AppointmentStatus, $from: DateTime, $to: DateTime, $first: Int!, $after: String) { patient(id: $p) { appointments(status: $s, from: $from, to: $to, first: $first, after: $after) { pageInfo { hasNextPage endCursor } edges { cursor node { id status startsAt reason provider { id displayName } } } } } }";

/// Many pages at once, of different patients, filters, positions and sizes, may share one
/// batched statement (`appointments::reads`): each still gets exactly the page it gets
/// when asked alone.
async fn concurrent_pages_of_appointments_stay_apart(b: Backend) {
    let app = spawn_app(b).await;
    let mut bulk: Vec<uuid::Uuid> = Vec::new();
    caregraph::seed::bulk_patients(&app.state, 4, false, |_, ids, _| {
        bulk.extend_from_slice(ids)
    })
    .await
    .unwrap();
    let ids = ids(&app).await;
    let doc = app.token(DOCTOR).await;
    let now = Utc::now();
    // Two more visits for the first bulk patient, and a cancelled one.
    let slots = free(
        &app,
        &doc,
        &ids.doctor,
        now + TimeDelta::days(30),
        now + TimeDelta::days(40),
    )
    .await;
    let first = bulk[0].to_string();
    for s in &slots[..3] {
        booked(&app, &doc, &first, &ids.doctor, *s).await;
    }
    let page = app
        .gql(
            Some(&doc),
            PAGE,
            json!({ "p": first, "s": "SCHEDULED", "first": 5 }),
        )
        .await;
    let cancel = page["data"]["patient"]["appointments"]["edges"][0]["node"]["id"].clone();
    let r = app.gql(Some(&doc), CANCEL, json!({ "id": cancel })).await;
    assert!(r["errors"].is_null(), "{r}");

    let mut cases: Vec<Value> = Vec::new();
    for p in bulk.iter().map(|id| id.to_string()) {
        let head = app
            .gql(Some(&doc), PAGE, json!({ "p": p, "first": 2 }))
            .await;
        let after = head["data"]["patient"]["appointments"]["pageInfo"]["endCursor"].clone();
        assert!(after.is_string(), "{head}");
        cases.extend([
            json!({ "p": p, "first": 2 }),
            json!({ "p": p, "first": 1, "after": after }),
            json!({ "p": p, "first": 20, "after": after }),
            json!({ "p": p, "s": "SCHEDULED", "first": 20 }),
            json!({ "p": p, "s": "COMPLETED", "first": 20 }),
            json!({ "p": p, "s": "CANCELLED", "first": 20 }),
            json!({ "p": p, "from": iso(now), "first": 20 }),
            json!({ "p": p, "to": iso(now), "first": 20 }),
            json!({ "p": p, "from": iso(now), "to": iso(now + TimeDelta::days(35)), "first": 20, "after": after }),
        ]);
    }
    let mut alone = Vec::new();
    let (d0, _) = app.state.sql.snapshot();
    for vars in &cases {
        let r = app.gql(Some(&doc), PAGE, vars.clone()).await;
        assert!(r["errors"].is_null(), "{vars}: {r}");
        alone.push(r["data"].clone());
    }
    // The pages differ from one another, so a page given another's rows is noticed.
    let shown = |d: &Value| {
        d["patient"]["appointments"]["edges"]
            .as_array()
            .unwrap()
            .len()
    };
    assert!(alone.iter().any(|d| shown(d) == 0), "{alone:?}");
    assert!(alone.iter().any(|d| shown(d) > 3), "{alone:?}");
    let (d1, _) = app.state.sql.snapshot();
    for round in 0..3 {
        let (t0, _) = app.state.sql.snapshot();
        let together = futures_util::future::join_all(
            cases
                .iter()
                .map(|vars| app.gql(Some(&doc), PAGE, vars.clone())),
        )
        .await;
        let (t1, _) = app.state.sql.snapshot();
        println!(
            "{b:?}: {} pages: {} data statements one by one, {} at once (round {round})",
            cases.len(),
            d1 - d0,
            t1 - t0
        );
        for ((vars, want), r) in cases.iter().zip(&alone).zip(together) {
            assert!(r["errors"].is_null(), "{vars}: {r}");
            assert_eq!(&r["data"], want, "{vars}");
        }
    }
}
