//! What writing call records costs at 300 calls/s (issue 8): how long the
//! "answered" and "connected" updates wait before they are in the database
//! with the batched writer, and what one transaction per update (writing
//! synchronously from the call) would cost instead. Run by hand:
//! `cargo test --lib store::cost -- --ignored --nocapture` (add `--release`
//! for the release build; PostgreSQL too when HOTLINE_TEST_PG is set, e.g.
//! `HOTLINE_TEST_PG=postgres://postgres@127.0.0.1:5432/test`).
//!
//! Measured 2026-12-02 on the development machine (2 cores, AMD EPYC,
//! shared with other work; PostgreSQL 15 on loopback), median / worst wait:
//!
//! | build   | SQLite          | PostgreSQL      | PostgreSQL, before `pg_batch` |
//! |---------|-----------------|-----------------|-------------------------------|
//! | debug   | 4.6 ms / 12 ms  | 6.1 ms / 17 ms  | 6.3 ms / 76 ms to 1.27 s      |
//! | release | 1.9 ms / 30 ms  | 4.3 ms / 32 ms  | 3.5 ms / 43 ms                |
//!
//! With four CPU-bound processes competing for the two cores, debug build:
//! PostgreSQL 17 ms / 56 ms, against 469 ms / 1.33 s when every event was its
//! own statement (earlier, during a build: 3.7 s / 4.6 s); SQLite 0.17 to 0.43 s
//! / 0.8 s. Single runs on a shared machine vary: a worst case of about 0.5 s
//! was seen once for either database while other builds were writing to the
//! disk. One commit per update takes 0.4 ms (SQLite) to 0.7 ms (PostgreSQL) in
//! release, 0.7 to 1 ms in debug and several ms under load: at or past the
//! 0.42 ms that 2,400 updates a second allow, so the writer stays batched.

use std::time::{Duration, Instant};

use super::backend;
use super::event::{AttemptResult, CallEvent, HangupBy, Outcome};
use super::tests::{at, started};
use super::{Store, StoreOptions};

/// A connected call's eight updates.
fn call_events(id: &str, secs: i64) -> Vec<CallEvent> {
    let call_id = || id.to_string();
    vec![
        CallEvent::Started(started(id, secs)),
        CallEvent::Answered {
            call_id: call_id(),
            at: at(secs),
        },
        CallEvent::Key {
            call_id: call_id(),
            keys: "2".into(),
        },
        CallEvent::Station {
            call_id: call_id(),
            station: "health".into(),
        },
        CallEvent::AttemptStarted {
            call_id: call_id(),
            attempt_no: 1,
            volunteer: "ana".into(),
            target: "sip:ana@10.0.0.5".into(),
            at: at(secs),
        },
        CallEvent::AttemptEnded {
            call_id: call_id(),
            attempt_no: 1,
            at: at(secs),
            result: AttemptResult::Answered,
            sip_status: Some(200),
            reason: None,
        },
        CallEvent::Connected {
            call_id: call_id(),
            volunteer: "ana".into(),
            at: at(secs),
        },
        CallEvent::Ended {
            call_id: call_id(),
            at: at(secs + 60),
            outcome: Outcome::Connected,
            hangup_by: HangupBy::Caller,
            reason: None,
        },
    ]
}

/// 300 calls/s for 5 s through the store; prints the median and worst wait
/// of an update for the database.
async fn measure(url: &str, opts: StoreOptions, label: &str) -> Result<(), super::StoreError> {
    let store = Store::open_with(url, opts).await?;
    let queue = store.inner.queue.clone();
    let watcher = {
        let mut rx = queue.subscribe();
        tokio::spawn(async move {
            let mut seen = Vec::new();
            while rx.changed().await.is_ok() {
                let done = *rx.borrow_and_update();
                seen.push((Instant::now(), done));
            }
            seen
        })
    };
    let mut sent: Vec<(Instant, u64)> = Vec::new();
    let start = Instant::now();
    let tick = Duration::from_millis(10);
    let mut n = 0u32;
    for step in 0..500u32 {
        // 3 calls per 10 ms = 300 calls/s.
        for _ in 0..3 {
            for ev in call_events(&format!("{label}-{n}"), i64::from(n)) {
                store.record(ev);
            }
            n += 1;
        }
        sent.push((Instant::now(), queue.enqueued()));
        tokio::time::sleep_until((start + tick * (step + 1)).into()).await;
    }
    store.flush(Duration::from_secs(120)).await?;
    let took = start.elapsed();
    drop(store);
    drop(queue);
    let seen = watcher.await.unwrap_or_default();
    let mut waits: Vec<Duration> = sent
        .iter()
        .filter_map(|(t, seq)| {
            let (done_at, _) = seen.iter().find(|(_, d)| d >= seq)?;
            Some(done_at.duration_since(*t))
        })
        .collect();
    waits.sort();
    let worst = waits.last().copied().unwrap_or_default();
    let median = waits.get(waits.len() / 2).copied().unwrap_or_default();
    println!(
        "{label}: 1500 calls (12000 updates) at 300 calls/s in {took:?}: \
         an update is in the database after median {median:?}, worst {worst:?}"
    );

    // One transaction per update, as a synchronous write from the call would do.
    let b = backend::open(url, &StoreOptions::default()).await?;
    let evs: Vec<CallEvent> = (0..250)
        .flat_map(|i| call_events(&format!("{label}-sync{i}"), i))
        .collect();
    let t = Instant::now();
    for ev in &evs {
        b.apply_batch(std::slice::from_ref(ev)).await?;
    }
    let per = t.elapsed() / u32::try_from(evs.len()).unwrap_or(1);
    let need = Duration::from_secs(1) / 2400;
    println!(
        "{label}: one commit per update takes {per:?}; 300 calls/s needs 2400 updates/s, \
         i.e. at most {need:?} each: {}",
        if per <= need {
            "keeps up"
        } else {
            "falls behind"
        }
    );
    Ok(())
}

#[tokio::test]
#[ignore = "a measurement, run by hand"]
async fn write_through_cost_at_300_calls_per_second() -> super::tests::TestResult {
    let dir = tempfile::tempdir()?;
    let url = format!("sqlite://{}", dir.path().join("cost.db").display());
    measure(&url, StoreOptions::default(), "sqlite").await?;
    if let Ok(pg) = std::env::var("HOTLINE_TEST_PG") {
        let schema = format!("hotline_cost_{:08x}", rand::random::<u32>());
        let opts = StoreOptions {
            pg_schema: Some(schema.clone()),
            ..StoreOptions::default()
        };
        let result = measure(&pg, opts, "postgres").await;
        use sqlx::{Connection, Executor};
        let mut admin = sqlx::PgConnection::connect(&pg).await?;
        admin
            .execute(sqlx::AssertSqlSafe(format!(
                "DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"
            )))
            .await?;
        result?;
    }
    Ok(())
}
