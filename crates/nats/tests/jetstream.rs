//! The JetStream transport against the real NATS server: tickets are stored once per job and
//! hand-out, delivered to one fetcher at a time, gone once acknowledged, and delivered again
//! when refused or left unacknowledged.

use std::time::Duration;

use authsome_control::jobs::{JobTransport, Ticket};
use authsome_domain::id::JobId;
use authsome_nats::{JetStreamJobs, JetStreamSettings};

async fn transport(ack_wait: Duration) -> Option<(JetStreamJobs, String)> {
    let url = authsome_testkit::nats_url()?;
    let name = authsome_testkit::unique("JOBS");
    let mut settings = JetStreamSettings::new(&url);
    settings.stream = name.clone();
    settings.subject_prefix = format!("test.{}", name.to_lowercase());
    settings.ack_wait = ack_wait;
    Some((JetStreamJobs::connect(&settings).await.unwrap(), name))
}

fn ticket(attempt: u32) -> Ticket {
    Ticket {
        job: JobId::new(),
        attempt,
        kind: "rotation.run".into(),
    }
}

#[tokio::test]
async fn tickets_are_stored_once_and_gone_when_acknowledged() {
    let Some((jobs, stream)) = transport(Duration::from_secs(30)).await else {
        return;
    };
    let a = ticket(1);
    let b = ticket(1);
    jobs.publish(std::slice::from_ref(&a)).await.unwrap();
    // The relay published it again (it did not see the first acknowledgement): stored once.
    jobs.publish(std::slice::from_ref(&a)).await.unwrap();
    jobs.publish(std::slice::from_ref(&b)).await.unwrap();
    let mut again = a.clone();
    again.attempt = 2;
    jobs.publish(std::slice::from_ref(&again)).await.unwrap();

    let got = jobs.fetch(10, Duration::from_millis(500)).await.unwrap();
    let tickets: Vec<_> = got.iter().map(|d| d.ticket().unwrap()).collect();
    assert_eq!(tickets, [a.clone(), b.clone(), again.clone()]);
    // While they are out, nobody else is handed them.
    assert!(jobs
        .fetch(10, Duration::from_millis(200))
        .await
        .unwrap()
        .is_empty());
    for d in got {
        d.ack().await;
    }
    assert!(jobs
        .fetch(10, Duration::from_millis(200))
        .await
        .unwrap()
        .is_empty());
    jobs.delete_stream(&stream).await.unwrap();
}

#[tokio::test]
async fn refused_and_abandoned_tickets_are_delivered_again() {
    let Some((jobs, stream)) = transport(Duration::from_secs(1)).await else {
        return;
    };
    let refused = ticket(1);
    let abandoned = ticket(1);
    jobs.publish(std::slice::from_ref(&refused)).await.unwrap();
    jobs.publish(std::slice::from_ref(&abandoned))
        .await
        .unwrap();
    let mut got = jobs.fetch(10, Duration::from_millis(500)).await.unwrap();
    assert_eq!(got.len(), 2);
    let second = got.pop().unwrap();
    let first = got.pop().unwrap();
    assert_eq!(first.ticket().unwrap(), refused);
    first.retry_after(Duration::from_millis(100)).await;
    // The second's worker "died": never settled. After the ack wait both come back.
    drop(second);
    let mut back = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while back.len() < 2 && std::time::Instant::now() < deadline {
        for d in jobs.fetch(10, Duration::from_millis(500)).await.unwrap() {
            back.push(d.ticket().unwrap());
            d.ack().await;
        }
    }
    back.sort_by(|x, y| x.job.as_str().cmp(y.job.as_str()));
    let mut want = vec![refused, abandoned];
    want.sort_by(|x, y| x.job.as_str().cmp(y.job.as_str()));
    assert_eq!(back, want);
    jobs.delete_stream(&stream).await.unwrap();
}

#[tokio::test]
async fn an_unreachable_server_is_a_clear_error() {
    let mut settings = JetStreamSettings::new("nats://127.0.0.1:1");
    settings.stream = authsome_testkit::unique("JOBS");
    let err = match JetStreamJobs::connect(&settings).await {
        Ok(_) => panic!("connected to nothing"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("cannot connect to NATS"), "{err}");
}
