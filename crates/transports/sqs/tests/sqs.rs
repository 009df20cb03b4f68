//! SQS transport behaviour beyond the conformance suite, against a real moto server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::TcpListener;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use serde_json::{json, Value};
use support::{connect, namespace, options, shared, Moto};
use troupe_transport::{ConnectOptions, Transport, TransportError};
use troupe_transport_conformance::stub::Stub;
use troupe_transport_sqs::{
    AwsCredentialSource, AwsCredentials, SqsConfig, SqsTransport, MAX_MESSAGE_BYTES,
};

const VIS: Duration = Duration::from_secs(30);

async fn receive_within(
    t: &dyn Transport,
    queue: &str,
    wait: Duration,
) -> Option<troupe_transport::Delivery> {
    tokio::time::timeout(wait, t.receive(queue))
        .await
        .ok()
        .map(|r| r.unwrap())
}

fn rfc3339(at: SystemTime) -> String {
    let t = time::OffsetDateTime::from(at);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

#[tokio::test]
async fn unreachable_endpoint_is_unavailable_naming_the_url() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut c =
        SqsConfig::from_url(&format!("sqs://us-east-1?endpoint=http://127.0.0.1:{port}")).unwrap();
    c.retry_for = Duration::from_millis(500);
    let err = SqsTransport::connect(c, ConnectOptions::new("ns"))
        .await
        .err()
        .unwrap();
    match &err {
        TransportError::Unavailable {
            kind: "sqs",
            url,
            message,
        } => {
            assert!(url.contains(&format!("127.0.0.1:{port}")), "{url}");
            assert!(!message.is_empty());
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert!(
        err.to_string().contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );
}

#[tokio::test]
async fn no_credentials_without_an_endpoint_is_a_config_error() {
    if AwsCredentials::from_env().is_some() {
        eprintln!("AWS credentials are set in the environment; nothing to check");
        return;
    }
    let err = SqsTransport::connect(SqsConfig::new("us-east-1"), ConnectOptions::new("ns"))
        .await
        .err()
        .unwrap();
    assert!(
        matches!(&err, TransportError::Config { kind: "sqs", message } if message.contains("AWS_ACCESS_KEY_ID")),
        "{err:?}"
    );
}

/// moto checks SigV4 signatures once its IAM emulation is switched on: a good key
/// proves the signer against botocore's; a bad secret and an unknown key must be
/// refused as `Auth`.
#[tokio::test]
async fn signatures_are_verified_and_bad_credentials_are_auth_errors() {
    // A server of its own: switching on auth is global to a moto process.
    let Some(moto) = Moto::start() else { return };
    moto.raw_query(
        "iam",
        &[
            ("Action", "CreateUser"),
            ("UserName", "troupe"),
            ("Version", "2010-05-08"),
        ],
    )
    .await;
    let policy =
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#;
    moto.raw_query(
        "iam",
        &[
            ("Action", "PutUserPolicy"),
            ("UserName", "troupe"),
            ("PolicyName", "all"),
            ("PolicyDocument", policy),
            ("Version", "2010-05-08"),
        ],
    )
    .await;
    let xml = moto
        .raw_query(
            "iam",
            &[
                ("Action", "CreateAccessKey"),
                ("UserName", "troupe"),
                ("Version", "2010-05-08"),
            ],
        )
        .await;
    let field = |name: &str| {
        let open = format!("<{name}>");
        let start = xml.find(&open).unwrap() + open.len();
        let end = xml[start..].find('<').unwrap() + start;
        xml[start..end].to_owned()
    };
    let good = AwsCredentials {
        access_key_id: field("AccessKeyId"),
        secret_access_key: field("SecretAccessKey"),
        session_token: None,
    };
    // From now on every request must be signed by a known key.
    moto.moto_api("/moto-api/reset-auth", "0").await;

    let ns = namespace();
    let with = |creds: AwsCredentials| {
        let mut c = support::config(&moto);
        c.credentials = AwsCredentialSource::Static(creds);
        c
    };
    let t = SqsTransport::connect(with(good.clone()), options(&ns, VIS))
        .await
        .unwrap();
    let q = t.queue_name("signed");
    t.send(&q, Bytes::from_static(b"{\"signed\":true}"))
        .await
        .unwrap();
    let d = receive_within(&t, &q, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(&d.body[..], b"{\"signed\":true}");
    t.ack(&d).await.unwrap();
    t.close().await;

    for bad in [
        AwsCredentials {
            secret_access_key: "wrong".to_owned(),
            ..good.clone()
        },
        AwsCredentials {
            access_key_id: "AKIAUNKNOWNKEY000000".to_owned(),
            ..good.clone()
        },
    ] {
        let err = SqsTransport::connect(with(bad), options(&ns, VIS))
            .await
            .err()
            .unwrap();
        match &err {
            TransportError::Auth {
                kind: "sqs",
                url,
                message,
            } => {
                assert!(url.starts_with("http://127.0.0.1:"), "{url}");
                assert!(!message.contains(&good.secret_access_key));
            }
            other => panic!("expected Auth, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn created_queues_have_redrive_retention_and_tags() {
    let Some(moto) = shared() else { return };
    let ns = namespace();
    let t = connect(moto, &ns, VIS).await;
    let q = t.queue_name("shaped");
    t.send(&q, Bytes::from_static(b"{}")).await.unwrap();
    let url = moto.raw("GetQueueUrl", json!({"QueueName": q})).await["QueueUrl"]
        .as_str()
        .unwrap()
        .to_owned();
    let attrs = moto
        .raw(
            "GetQueueAttributes",
            json!({"QueueUrl": url, "AttributeNames": ["All"]}),
        )
        .await;
    let a = &attrs["Attributes"];
    assert_eq!(a["MessageRetentionPeriod"], "345600");
    let redrive: Value = serde_json::from_str(a["RedrivePolicy"].as_str().unwrap()).unwrap();
    assert!(redrive["deadLetterTargetArn"]
        .as_str()
        .unwrap()
        .ends_with(&format!(":asya-{ns}-dlq")));
    assert_eq!(
        redrive["maxReceiveCount"].to_string().trim_matches('"'),
        "3"
    );
    let tags = moto.raw("ListQueueTags", json!({"QueueUrl": url})).await;
    assert_eq!(tags["Tags"]["asya.sh/namespace"], ns.as_str());
    assert_eq!(tags["Tags"]["asya.sh/actor"], "shaped");
    let dlq_url = moto
        .raw(
            "GetQueueUrl",
            json!({"QueueName": format!("asya-{ns}-dlq")}),
        )
        .await["QueueUrl"]
        .as_str()
        .unwrap()
        .to_owned();
    let dlq = moto
        .raw(
            "GetQueueAttributes",
            json!({"QueueUrl": dlq_url, "AttributeNames": ["All"]}),
        )
        .await;
    assert_eq!(dlq["Attributes"]["MessageRetentionPeriod"], "1209600");
    assert!(
        dlq["Attributes"].get("RedrivePolicy").is_none(),
        "the DLQ has no DLQ"
    );
    t.close().await;
}

#[tokio::test]
async fn binary_bodies_round_trip_and_too_large_fails_before_sending() {
    let Some(moto) = shared() else { return };
    let t = connect(moto, &namespace(), VIS).await;
    let q = t.queue_name("bytes");
    let odd = Bytes::from_static(b"\x00\x01binary\xff\xfe\x1b[0m");
    t.send(&q, odd.clone()).await.unwrap();
    let d = receive_within(&t, &q, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(d.body, odd);
    t.ack(&d).await.unwrap();

    let max = Bytes::from(vec![b'x'; MAX_MESSAGE_BYTES]);
    t.send(&q, max.clone()).await.unwrap();
    let d = receive_within(&t, &q, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(d.body.len(), MAX_MESSAGE_BYTES);
    t.ack(&d).await.unwrap();

    let big = Bytes::from(vec![b'x'; MAX_MESSAGE_BYTES + 1]);
    match t.send(&q, big).await {
        Err(TransportError::TooLarge { size, limit, .. }) => {
            assert_eq!(limit, MAX_MESSAGE_BYTES);
            assert_eq!(size, MAX_MESSAGE_BYTES + 1);
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    assert_eq!(t.depth(&q).await.unwrap().ready, 0, "nothing was sent");
    t.close().await;
}

#[tokio::test]
async fn deferred_messages_wait_until_due_and_arrive_as_a_fresh_copy() {
    let Some(moto) = shared() else { return };
    let t = connect(moto, &namespace(), VIS).await;
    let q = t.queue_name("deferred");
    t.send(&q, Bytes::from_static(b"{\"warm\":1}"))
        .await
        .unwrap();
    let warm = receive_within(&t, &q, Duration::from_secs(10))
        .await
        .unwrap();
    t.ack(&warm).await.unwrap();
    let url = moto.raw("GetQueueUrl", json!({"QueueName": q})).await["QueueUrl"]
        .as_str()
        .unwrap()
        .to_owned();

    // What a sender's send_with_delay of more than 15 min leaves after 900 s: a
    // visible message whose deliver-at is still ahead (here 2 s).
    let due = SystemTime::now() + Duration::from_secs(2);
    let deferred_attr = |at: SystemTime| json!({"x-troupe-deliver-at": {"DataType": "String", "StringValue": rfc3339(at)}});
    moto.raw(
        "SendMessage",
        json!({"QueueUrl": url, "MessageBody": "{\"later\":1}", "MessageAttributes": deferred_attr(due)}),
    )
    .await;
    let start = std::time::Instant::now();
    assert!(
        receive_within(&t, &q, Duration::from_millis(1500))
            .await
            .is_none(),
        "delivered before due"
    );
    let d = receive_within(&t, &q, Duration::from_secs(6))
        .await
        .expect("due message");
    assert!(SystemTime::now() >= due, "after {:?}", start.elapsed());
    assert_eq!(&d.body[..], b"{\"later\":1}");
    assert_eq!(
        d.delivery_count,
        Some(1),
        "the re-sent copy starts counting afresh"
    );
    t.ack(&d).await.unwrap();

    // Already due: handed out at once (as a fresh copy as well).
    moto.raw(
        "SendMessage",
        json!({"QueueUrl": url, "MessageBody": "{\"past\":1}", "MessageAttributes": deferred_attr(SystemTime::now() - Duration::from_secs(60))}),
    )
    .await;
    let d = receive_within(&t, &q, Duration::from_secs(5))
        .await
        .expect("past-due message");
    assert_eq!(&d.body[..], b"{\"past\":1}");
    t.ack(&d).await.unwrap();

    // Garbage in the attribute never blocks a message.
    moto.raw(
        "SendMessage",
        json!({"QueueUrl": url, "MessageBody": "{\"odd\":1}", "MessageAttributes": {"x-troupe-deliver-at": {"DataType": "String", "StringValue": "soon"}}}),
    )
    .await;
    let d = receive_within(&t, &q, Duration::from_secs(5))
        .await
        .expect("garbled deferral");
    assert_eq!(&d.body[..], b"{\"odd\":1}");
    t.ack(&d).await.unwrap();
    assert!(receive_within(&t, &q, Duration::from_secs(1))
        .await
        .is_none());
    t.close().await;
}

#[tokio::test]
async fn long_delays_use_900_s_plus_deferral() {
    let Some(moto) = shared() else { return };
    let t = connect(moto, &namespace(), VIS).await;
    let q = t.queue_name("longdelay");
    t.send_with_delay(
        &q,
        Bytes::from_static(b"{\"in\":\"1h\"}"),
        Duration::from_secs(3600),
    )
    .await
    .unwrap();
    let depth = t.depth(&q).await.unwrap();
    assert_eq!((depth.ready, depth.delayed), (0, 1), "{depth:?}");
    assert!(receive_within(&t, &q, Duration::from_secs(1))
        .await
        .is_none());
    t.close().await;
}

#[tokio::test]
async fn a_dropped_receive_loses_nothing() {
    let Some(moto) = shared() else { return };
    // A long visibility: a message lost to a dropped request would be gone for 10 min.
    let t = connect(moto, &namespace(), Duration::from_secs(600)).await;
    troupe_transport_conformance::dropped_receive_loses_nothing(&t).await;
}

#[tokio::test]
async fn close_gives_buffered_messages_back_at_once() {
    let Some(moto) = shared() else { return };
    let ns = namespace();
    let a = connect(moto, &ns, Duration::from_secs(600)).await;
    let b = connect(moto, &ns, Duration::from_secs(600)).await;
    troupe_transport_conformance::close_gives_buffered_messages_back(
        &a,
        &b,
        Duration::from_millis(1500),
    )
    .await;
}

#[tokio::test]
async fn a_vanished_queue_is_created_again() {
    let Some(moto) = shared() else { return };
    let t = connect(moto, &namespace(), VIS).await;
    let q = t.queue_name("vanish");
    t.send(&q, Bytes::from_static(b"{\"n\":1}")).await.unwrap();
    let url = moto.raw("GetQueueUrl", json!({"QueueName": q})).await["QueueUrl"]
        .as_str()
        .unwrap()
        .to_owned();
    moto.raw("DeleteQueue", json!({"QueueUrl": url})).await;
    // The cached URL is stale now; the transport notices and recreates the queue.
    t.send(&q, Bytes::from_static(b"{\"n\":2}")).await.unwrap();
    let d = receive_within(&t, &q, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(&d.body[..], b"{\"n\":2}");
    t.ack(&d).await.unwrap();
    assert_eq!(
        t.depth(&t.queue_name("never-used")).await.unwrap(),
        Default::default(),
        "depth creates nothing"
    );
    t.close().await;
}

#[tokio::test]
async fn own_queue_url_is_used_without_lookup() {
    let Some(moto) = shared() else { return };
    let ns = namespace();
    let name = format!("asya-{ns}-own");
    let url = moto.raw("CreateQueue", json!({"QueueName": name})).await["QueueUrl"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut c = support::config(moto);
    c.queue_url = Some(url);
    let t = SqsTransport::connect(c, options(&ns, VIS)).await.unwrap();
    t.send(&name, Bytes::from_static(b"{}")).await.unwrap();
    let d = receive_within(&t, &name, Duration::from_secs(10))
        .await
        .unwrap();
    t.ack(&d).await.unwrap();
    // The platform made this queue, so no redrive was added to it.
    let attrs = moto
        .raw(
            "GetQueueAttributes",
            json!({"QueueUrl": c_url(moto, &name).await, "AttributeNames": ["All"]}),
        )
        .await;
    assert!(attrs["Attributes"].get("RedrivePolicy").is_none());
    t.close().await;
}

async fn c_url(moto: &Moto, name: &str) -> String {
    moto.raw("GetQueueUrl", json!({"QueueName": name})).await["QueueUrl"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// IRSA: credentials from STS `AssumeRoleWithWebIdentity` with the token file's
/// content; moto then verifies requests signed with the temporary key and its session
/// token against the role's policy.
#[tokio::test]
async fn web_identity_credentials_come_from_sts_and_sign_with_the_session_token() {
    let Some(moto) = Moto::start() else { return };
    let trust = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Federated":"oidc"},"Action":"sts:AssumeRoleWithWebIdentity"}]}"#;
    moto.raw_query(
        "iam",
        &[
            ("Action", "CreateRole"),
            ("RoleName", "troupe"),
            ("AssumeRolePolicyDocument", trust),
            ("Version", "2010-05-08"),
        ],
    )
    .await;
    let policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"sqs:*","Resource":"*"}]}"#;
    moto.raw_query(
        "iam",
        &[
            ("Action", "PutRolePolicy"),
            ("RoleName", "troupe"),
            ("PolicyName", "sqs"),
            ("PolicyDocument", policy),
            ("Version", "2010-05-08"),
        ],
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "eyJhbGciOiJSUzI1NiJ9.e30.c2ln\n").unwrap();
    let mut c = support::config(&moto);
    c.sts_endpoint = Some(moto.url.clone());
    c.credentials = AwsCredentialSource::WebIdentity {
        role_arn: "arn:aws:iam::123456789012:role/troupe".to_owned(),
        token_file,
        session_name: None,
    };
    let ns = namespace();
    // Connecting assumes the role (moto's STS answers unauthenticated calls only while
    // its IAM checks are off, which is why they are switched on after).
    let t = SqsTransport::connect(c, options(&ns, VIS)).await.unwrap();
    moto.moto_api("/moto-api/reset-auth", "0").await;
    // The checks are on: a key moto does not know is refused...
    let mut plain = support::config(&moto);
    plain.credentials = AwsCredentialSource::Static(AwsCredentials {
        access_key_id: "AKIAUNKNOWNKEY000000".to_owned(),
        secret_access_key: "x".to_owned(),
        session_token: None,
    });
    assert!(matches!(
        SqsTransport::connect(plain, options(&ns, VIS)).await,
        Err(TransportError::Auth { .. })
    ));
    // ...and the assumed role's temporary key is accepted.
    let q = t.queue_name("irsa");
    t.send(&q, Bytes::from_static(b"{\"irsa\":true}"))
        .await
        .unwrap();
    let d = receive_within(&t, &q, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(&d.body[..], b"{\"irsa\":true}");
    t.ack(&d).await.unwrap();
    t.close().await;
}

/// EKS Pod Identity / ECS: credentials from the container endpoint, with the
/// authorization token read from its file; a refusal there is an `Auth` error.
#[tokio::test]
async fn container_credentials_are_fetched_with_the_authorization_token() {
    let Some(moto) = shared() else { return };
    let endpoint = Stub::start(|s| match s.authorization.as_deref() {
        Some("pod-identity-token") => (
            200,
            r#"{"AccessKeyId":"ASIAPODIDENTITY","SecretAccessKey":"secret","Token":"session","Expiration":"2099-01-01T00:00:00Z"}"#.to_owned(),
        ),
        _ => (403, r#"{"code":"AccessDenied","message":"bad token"}"#.to_owned()),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "pod-identity-token\n").unwrap();
    let source = |file: std::path::PathBuf| AwsCredentialSource::Container {
        uri: format!("{}/v1/credentials", endpoint.url),
        authorization: None,
        authorization_file: Some(file),
    };
    let mut c = support::config(moto);
    c.credentials = source(token_file);
    let t = SqsTransport::connect(c.clone(), options(&namespace(), VIS))
        .await
        .unwrap();
    let q = t.queue_name("podid");
    t.send(&q, Bytes::from_static(b"{}")).await.unwrap();
    t.close().await;
    assert_eq!(
        endpoint.seen().len(),
        1,
        "fetched once, then cached until near expiry"
    );
    assert!(endpoint.seen()[0].line.starts_with("GET /v1/credentials "));

    let wrong = dir.path().join("wrong");
    std::fs::write(&wrong, "other").unwrap();
    c.credentials = source(wrong);
    match SqsTransport::connect(c, options(&namespace(), VIS))
        .await
        .err()
        .unwrap()
    {
        TransportError::Auth {
            kind: "sqs",
            message,
            ..
        } => assert!(message.contains("AccessKeyId"), "{message}"),
        other => panic!("expected Auth, got {other:?}"),
    }
}

/// The operator's `create_queue` passes SQS's refusal on with the queue's name: an
/// invalid name, and a queue that exists with other attributes (made by hand or another
/// tool), which the transport's own first use would just take as it is.
#[tokio::test]
async fn create_queue_refusals_are_readable() {
    let Some(moto) = shared() else { return };
    let ns = namespace();
    let t = connect(moto, &ns, VIS).await;

    let bad = format!("asya-{ns}-no.dots?");
    let err = t.create_queue(&bad).await.unwrap_err();
    let text = err.to_string();
    let TransportError::QueueRefused {
        kind,
        queue,
        reason,
    } = &err
    else {
        panic!("expected QueueRefused, got {err:?}");
    };
    assert_eq!((*kind, queue.as_str()), ("sqs", bad.as_str()));
    assert!(reason.starts_with("InvalidParameterValue"), "{reason}");
    assert!(text.contains(&bad), "{text}");
    println!("refused: {text}");
    // Nothing of that name can exist, so there is nothing to delete.
    t.delete_queue(&bad).await.unwrap();

    let clash = t.queue_name("clash");
    moto.raw(
        "CreateQueue",
        json!({"QueueName": clash, "Attributes": {"VisibilityTimeout": "99"}}),
    )
    .await;
    let err = t.create_queue(&clash).await.unwrap_err();
    let TransportError::QueueRefused { reason, .. } = &err else {
        panic!("expected QueueRefused, got {err:?}");
    };
    // AWS says QueueAlreadyExists (JSON) or QueueNameExists (query); moto the latter.
    assert!(reason.contains("already exists"), "{reason}");
    println!("refused: {err}");
    t.delete_queue(&clash).await.unwrap();
    t.create_queue(&clash).await.unwrap();
    t.close().await;
}
