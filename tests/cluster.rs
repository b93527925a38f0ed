//! Clusters over mock backends, on tokio's paused clock: routing by role, failover at once,
//! failback by the probe, key affinity, load-aware picks, and configuration errors.
#![allow(clippy::disallowed_types)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use millpond::balance::Balance;
use millpond::cluster::{Backend, Cluster, ClusterConn};
use millpond::pool::Pool;
use support::{Behavior, Probe, TestManager, eventually};

/// A backend named `name` over a fresh mock, and the mock's probe.
fn mock(name: &str, primary: bool) -> (Backend<TestManager>, Arc<Probe>) {
    let (manager, probe) = TestManager::new();
    let pool = Pool::builder(manager)
        .max_size(4)
        .create_timeout(Duration::from_secs(1))
        .acquire_timeout(Duration::from_secs(30))
        .disable_breaker();
    let backend = if primary { Backend::primary(name, pool) } else { Backend::replica(name, pool) };
    (backend, probe)
}

fn names(conns: &[ClusterConn<TestManager>]) -> Vec<&str> {
    conns.iter().map(ClusterConn::backend).collect()
}

#[tokio::test(start_paused = true)]
async fn writes_go_to_the_primary_and_reads_to_replicas_with_a_fallback() {
    let (a, _) = mock("a", true);
    let (b, _) = mock("b", false);
    let cluster = Cluster::builder().backend(a).backend(b).build().unwrap();
    assert_eq!(cluster.get_primary().await.unwrap().backend(), "a");
    assert_eq!(cluster.get_replica().await.unwrap().backend(), "b");

    // The only replica is down: reads fall back to the primary.
    let (c, c_probe) = mock("c", false);
    let (a2, _) = mock("a", true);
    let cluster = Cluster::builder().backend(a2).backend(c).build().unwrap();
    c_probe.set_create(Behavior::Fail);
    assert_eq!(cluster.get_replica().await.unwrap().backend(), "a");

    // Without the fallback, reads fail with the replica's own error.
    let (a3, _) = mock("a", true);
    let (d, d_probe) = mock("d", false);
    d_probe.set_create(Behavior::Fail);
    let strict = Cluster::builder()
        .backend(a3)
        .backend(d)
        .reads_fall_back_to_primary(false)
        .build()
        .unwrap();
    let err = strict.get_replica().await.unwrap_err();
    assert!(err.is_unavailable());
    assert!(err.to_string().contains("connection refused"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn a_failing_backend_leaves_the_rotation_at_once_and_the_probe_brings_it_back() {
    let (a, _) = mock("a", false);
    let (b, b_probe) = mock("b", false);
    let cluster = Cluster::builder()
        .backend(a)
        .backend(b)
        .probe_interval(Duration::from_secs(2))
        .build()
        .unwrap();
    b_probe.set_create(Behavior::Fail);

    // Every call succeeds: the one routed to `b` moves to `a`.
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(cluster.get().await.unwrap());
    }
    assert_eq!(names(&held), ["a", "a", "a", "a"]);
    let status = cluster.status();
    assert_eq!(status.in_rotation, 1);
    assert!(!status.backends[1].in_rotation);
    assert_eq!(status.failovers, 1);
    assert!(status.backends[1].last_error.as_deref().unwrap().contains("connection refused"));
    drop(held);

    // `b` recovers: the probe readmits it, and round-robin gives it its share again.
    b_probe.set_create(Behavior::Succeed);
    eventually("the probe readmits b", Duration::from_secs(10), || {
        cluster.status().in_rotation == 2
    })
    .await;
    let mut served = Vec::new();
    for _ in 0..4 {
        served.push(cluster.get().await.unwrap());
    }
    let on_b = names(&served).iter().filter(|name| **name == "b").count();
    assert_eq!(on_b, 2, "round-robin over both again: {:?}", names(&served));
    assert_eq!(cluster.status().backends[1].readmissions, 1);
}

#[tokio::test(start_paused = true)]
async fn a_caller_waiting_on_a_hung_backend_moves_when_its_create_times_out() {
    let (a, _) = mock("a", false);
    let (b, b_probe) = mock("b", false);
    let cluster = Cluster::builder().backend(b).backend(a).build().unwrap();
    b_probe.set_create(Behavior::Hang);
    let started = tokio::time::Instant::now();
    let conn = cluster.get().await.unwrap();
    assert_eq!(conn.backend(), "a");
    // The pool's create timeout (1 s) moved it, not its acquire timeout (30 s).
    assert_eq!(started.elapsed(), Duration::from_secs(1));
    // One timeout alone does not take a backend out: it may only be slow.
    assert!(cluster.status().backends[0].in_rotation);
    // A second in a row does.
    let mut held = vec![conn];
    while cluster.status().backends[0].in_rotation {
        held.push(cluster.get().await.unwrap());
        assert!(started.elapsed() < Duration::from_secs(3), "one more timeout, and a backoff");
    }
    assert_eq!(b_probe.create_calls(), 2);
    assert!(held.iter().all(|conn| conn.backend() == "a"));
}

#[tokio::test(start_paused = true)]
async fn a_slow_but_healthy_backend_stays_in_rotation_after_one_create_timeout() {
    let (a, _) = mock("a", false);
    let (b, b_probe) = mock("b", false);
    let cluster = Cluster::builder().backend(b).backend(a).build().unwrap();
    // b's first connection takes longer than the create timeout; the next ones are quick.
    b_probe.set_create(Behavior::Delay(Duration::from_millis(1_500)));
    let first = cluster.get().await.unwrap();
    assert_eq!(first.backend(), "a", "the caller moved on");
    b_probe.set_create(Behavior::Succeed);
    assert!(cluster.status().backends[0].in_rotation, "one create timeout is no ejection");
    let mut held = vec![first];
    for _ in 0..3 {
        held.push(cluster.get().await.unwrap());
    }
    assert!(held.iter().any(|conn| conn.backend() == "b"), "b still serves");
    assert_eq!(cluster.status().backends[0].ejections, 0);
}

/// A checkout by one of the cluster's four ways to get a connection.
async fn checkout(cluster: &Cluster<TestManager>, method: &str) -> ClusterConn<TestManager> {
    let got = match method {
        "get" => cluster.get().await,
        "get_keyed" => cluster.get_keyed(7).await,
        "get_primary" => cluster.get_primary().await,
        "get_replica" => cluster.get_replica().await,
        _ => unreachable!("no such method {method}"),
    };
    got.unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_cluster_get_leaves_nothing_waiting() {
    for method in ["get", "get_keyed", "get_primary", "get_replica"] {
        let (p, p_probe) = mock("p", true);
        let (r, r_probe) = mock("r", false);
        p_probe.set_create(Behavior::Delay(Duration::from_millis(500)));
        r_probe.set_create(Behavior::Delay(Duration::from_millis(500)));
        let cluster = Cluster::builder().backend(p).backend(r).build().unwrap();

        let cancelled =
            tokio::time::timeout(Duration::from_millis(10), checkout(&cluster, method)).await;
        assert!(cancelled.is_err(), "{method}: still creating when dropped");
        let status = cluster.status();
        assert_eq!(status.in_use, 0, "{method}");
        for backend in &status.backends {
            assert!(backend.in_rotation, "{method}: a cancelled call is no failure");
            assert_eq!((backend.pool.waiters, backend.pool.in_use), (0, 0), "{method}");
        }
        let creating: usize = status.backends.iter().map(|backend| backend.pool.creating).sum();
        assert_eq!(creating, 1, "{method}: the creation goes on without its caller");

        // It lands in the pool, for the next caller.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let status = cluster.status();
        let idle: usize = status.backends.iter().map(|backend| backend.pool.idle).sum();
        assert_eq!(idle, 1, "{method}: {status:?}");
        assert_eq!(p_probe.created() + r_probe.created(), 1, "{method}");
        let conn = checkout(&cluster, method).await;
        assert_eq!(cluster.status().in_use, 1, "{method}: {}", conn.backend());
    }
}

#[tokio::test(start_paused = true)]
async fn a_key_stays_on_its_backend_and_moves_only_with_it() {
    let (a, _) = mock("a", false);
    let (b, _) = mock("b", false);
    let (c, c_probe) = mock("c", false);
    let cluster = Cluster::builder().backend(a).backend(b).backend(c).build().unwrap();
    let mut owner = Vec::new();
    for key in 0..60_u64 {
        owner.push(cluster.get_keyed(key).await.unwrap().backend().to_owned());
        assert_eq!(cluster.get_keyed(key).await.unwrap().backend(), owner[key as usize]);
    }
    assert!(["a", "b", "c"].iter().all(|name| owner.iter().any(|o| o == name)));

    // `c` leaves: only its keys move.
    // `c` goes away: its idle connections fail their next check, and it cannot make more.
    c_probe.set_create(Behavior::Fail);
    c_probe.set_check(Behavior::Fail);
    tokio::time::sleep(Duration::from_secs(1)).await;
    for key in 0..60_u64 {
        let now = cluster.get_keyed(key).await.unwrap().backend().to_owned();
        if owner[key as usize] == "c" {
            assert_ne!(now, "c");
        } else {
            assert_eq!(now, owner[key as usize], "key {key} stayed");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn least_loaded_sends_the_next_call_to_the_backend_with_fewest_in_use() {
    let (a, _) = mock("a", false);
    let (b, _) = mock("b", false);
    let cluster =
        Cluster::builder().backend(a).backend(b).balance(Balance::LeastLoaded).build().unwrap();
    let first = cluster.get().await.unwrap();
    let second = cluster.get().await.unwrap();
    assert_ne!(first.backend(), second.backend());
    let busy = first.backend().to_owned();
    drop(second);
    for _ in 0..5 {
        assert_ne!(cluster.get().await.unwrap().backend(), busy);
    }
}

#[tokio::test(start_paused = true)]
async fn bad_configurations_are_rejected_naming_the_field() {
    let none = Cluster::<TestManager>::builder().build().unwrap_err();
    assert_eq!(none.field(), Some("backends"));

    let (a, _) = mock("a", true);
    let (a2, _) = mock("a", false);
    let twins = Cluster::builder().backend(a).backend(a2).build().unwrap_err();
    assert_eq!(twins.field(), Some("backends"));

    let (a, _) = mock("a", true);
    let (b, _) = mock("b", false);
    let short = Cluster::builder()
        .backend(a)
        .backend(b)
        .balance(Balance::WeightedRoundRobin(vec![1]))
        .build()
        .unwrap_err();
    assert_eq!(short.field(), Some("balance"));

    assert!(short.to_string().contains("([1])"), "{short}");

    // Refused weights are shown as the user wrote them, not a role's share of them.
    let (a, _) = mock("a", true);
    let (b, _) = mock("b", false);
    let (c, _) = mock("c", false);
    let all_zero = Cluster::builder()
        .backend(a)
        .backend(b)
        .backend(c)
        .balance(Balance::WeightedRandom(vec![0, 0, 0]))
        .build()
        .unwrap_err();
    assert_eq!(all_zero.field(), Some("balance"));
    assert!(all_zero.to_string().contains("invalid `balance` ([0, 0, 0])"), "{all_zero}");

    let (a, _) = mock("a", true);
    let eager = Cluster::builder().backend(a).failures_to_eject(0).build().unwrap_err();
    assert_eq!(eager.field(), Some("failures_to_eject"));

    let (a, _) = mock("a", true);
    let no_probe =
        Cluster::builder().backend(a).probe_interval(Duration::ZERO).build().unwrap_err();
    assert_eq!(no_probe.field(), Some("probe_interval"));

    let (manager, _) = TestManager::new();
    let bad_pool = Cluster::builder()
        .backend(Backend::replica("b", Pool::builder(manager).max_size(0)))
        .build()
        .unwrap_err();
    assert_eq!(bad_pool.field(), Some("max_size"));
    assert!(bad_pool.to_string().contains("backend `b`"), "{bad_pool}");
    assert_eq!(bad_pool.path().as_deref(), Some("backends.b.max_size"));
}

#[tokio::test(start_paused = true)]
async fn writes_fail_at_once_with_the_cause_while_the_primary_is_out() {
    let (a, a_probe) = mock("a", true);
    let (b, _) = mock("b", false);
    let cluster = Cluster::builder()
        .backend(a)
        .backend(b)
        .probe_interval(Duration::from_secs(60))
        .build()
        .unwrap();
    a_probe.set_create(Behavior::Fail);
    let first = cluster.get_primary().await.unwrap_err();
    assert!(first.to_string().contains("connection refused"), "{first}");

    // Out of rotation now: the next write does not even try, and says why.
    let calls = a_probe.create_calls();
    let started = tokio::time::Instant::now();
    let again = cluster.get_primary().await.unwrap_err();
    assert_eq!(started.elapsed(), Duration::ZERO);
    assert_eq!(a_probe.create_calls(), calls, "no attempt on a backend out of rotation");
    assert!(again.is_unavailable());
    assert!(
        again.to_string().contains("`a`") && again.to_string().contains("connection refused"),
        "{again}"
    );
    // Reads go on.
    assert_eq!(cluster.get_replica().await.unwrap().backend(), "b");
}

/// Weight 0 keeps a backend off a route while a weighted backend of that route is in rotation:
/// `[0, 1, 1]` keeps general calls off the primary, which still takes the writes, and takes
/// general calls again when the replicas are out.
#[tokio::test(start_paused = true)]
async fn a_zero_weight_keeps_the_primary_off_general_calls_but_not_off_writes() {
    for balance in
        [Balance::WeightedRoundRobin(vec![0, 1, 1]), Balance::WeightedRandom(vec![0, 1, 1])]
    {
        let (a, _) = mock("a", true);
        let (b, _) = mock("b", false);
        let (c, _) = mock("c", false);
        let cluster = Cluster::builder()
            .backend(a)
            .backend(b)
            .backend(c)
            .balance(balance.clone())
            .probe_interval(Duration::from_secs(60))
            .build()
            .unwrap_or_else(|err| panic!("{balance:?} refused: {err}"));
        let mut general = Vec::new();
        for _ in 0..20 {
            general.push(cluster.get().await.unwrap().backend().to_owned());
        }
        assert!(!general.contains(&"a".to_owned()), "{balance:?}: {general:?}");
        assert!(general.contains(&"b".to_owned()), "{balance:?}: {general:?}");
        assert!(general.contains(&"c".to_owned()), "{balance:?}: {general:?}");
        for key in 0..50 {
            assert_ne!(cluster.get_keyed(key).await.unwrap().backend(), "a", "key {key}");
        }
        assert_eq!(cluster.get_primary().await.unwrap().backend(), "a");
        assert_ne!(cluster.get_replica().await.unwrap().backend(), "a");

        // With both replicas failing, the primary is the fallback for general calls.
        let (a, _) = mock("a", true);
        let (b, b_probe) = mock("b", false);
        let (c, c_probe) = mock("c", false);
        b_probe.set_create(Behavior::Fail);
        c_probe.set_create(Behavior::Fail);
        let cluster = Cluster::builder()
            .backend(a)
            .backend(b)
            .backend(c)
            .balance(balance.clone())
            .probe_interval(Duration::from_secs(60))
            .build()
            .unwrap();
        assert_eq!(cluster.get().await.unwrap().backend(), "a", "{balance:?}");
        assert_eq!(cluster.status().in_rotation, 1, "{balance:?}");
        assert_eq!(cluster.get_keyed(7).await.unwrap().backend(), "a", "{balance:?}");
    }

    // The other way round: replicas weighted 0 take no general calls, and reads still.
    let (a, _) = mock("a", true);
    let (b, _) = mock("b", false);
    let cluster = Cluster::builder()
        .backend(a)
        .backend(b)
        .balance(Balance::WeightedRoundRobin(vec![1, 0]))
        .build()
        .unwrap();
    let general = [cluster.get().await.unwrap(), cluster.get().await.unwrap()];
    assert_eq!(names(&general), ["a", "a"]);
    assert_eq!(cluster.get_replica().await.unwrap().backend(), "b");
}

/// A slow creation that started before a faster one succeeded fails afterwards: its failure is
/// older news than the success, so the backend stays in rotation (it used to be taken out until
/// the next probe, and the callers waiting on it were moved or failed).
#[tokio::test(start_paused = true)]
async fn a_failure_older_than_a_success_keeps_the_backend_in_rotation() {
    let (a, a_probe) = mock("a", true);
    let cluster =
        Cluster::builder().backend(a).probe_interval(Duration::from_secs(60)).build().unwrap();
    a_probe.set_create(Behavior::FailAfter(Duration::from_secs(10)));
    let first = tokio::spawn({
        let cluster = cluster.clone();
        async move { cluster.get().await.map(|conn| conn.backend().to_owned()) }
    });
    eventually("the slow creation starts", Duration::from_secs(1), || a_probe.create_calls() == 1)
        .await;
    a_probe.set_create(Behavior::Succeed);
    let second = tokio::spawn({
        let cluster = cluster.clone();
        async move { cluster.get().await.map(|conn| conn.backend().to_owned()) }
    });
    eventually("the fast creation succeeds", Duration::from_secs(1), || a_probe.created() == 1)
        .await;

    // The slow one fails now.
    tokio::time::sleep(Duration::from_secs(11)).await;
    let status = cluster.status();
    assert!(status.backends[0].in_rotation, "a working backend was taken out");
    assert_eq!(status.backends[0].ejections, 0);
    assert_eq!(first.await.unwrap().unwrap(), "a");
    assert_eq!(second.await.unwrap().unwrap(), "a");
}

/// A cluster that outlives the runtime it was built on, as a `static` one shared by
/// `#[tokio::test]`s does: a creation its shutdown drops does not take a healthy backend out,
/// and the health probe starts again on the next caller's runtime, so a backend that fails
/// there comes back when it recovers.
#[test]
fn a_cluster_whose_runtime_is_gone_keeps_its_backends_and_its_probe() {
    let first = support::runtime::runtime();
    let backend = |name: &str| {
        let (manager, probe) = TestManager::new();
        probe.set_create(Behavior::Delay(Duration::from_millis(100)));
        let pool = Pool::builder(manager)
            .max_size(4)
            .create_timeout(Duration::from_secs(1))
            .acquire_timeout(Duration::from_secs(30))
            .disable_breaker();
        (Backend::replica(name, pool), probe)
    };
    let (a, a_probe) = backend("a");
    let (b, b_probe) = backend("b");
    let cluster = first.block_on(async {
        let cluster = Cluster::builder()
            .backend(a)
            .backend(b)
            .probe_interval(Duration::from_secs(2))
            .build()
            .unwrap();
        // A call to each backend starts a creation, still connecting when the runtime goes.
        for _ in 0..2 {
            let mut get = Box::pin(cluster.get());
            assert!(futures::poll!(&mut get).is_pending());
        }
        tokio::task::yield_now().await;
        cluster
    });
    assert_eq!((a_probe.create_calls(), b_probe.create_calls()), (1, 1), "creations in flight");
    drop(first);
    assert_eq!(cluster.status().in_rotation, 2, "a shutdown is no create timeout");

    let second = support::runtime::runtime();
    a_probe.set_create(Behavior::Succeed);
    b_probe.set_create(Behavior::Fail);
    support::runtime::no_hang(&second, "cluster calls", async {
        // Round-robin: the call routed to `b` fails over to `a`, and `b` leaves the rotation.
        let mut held = Vec::new();
        for _ in 0..4 {
            held.push(cluster.get().await.unwrap());
        }
        assert_eq!(names(&held), ["a", "a", "a", "a"]);
        assert_eq!(cluster.status().in_rotation, 1);
        drop(held);
        // `b` recovers: the probe, running on this runtime now, readmits it.
        b_probe.set_create(Behavior::Succeed);
        eventually("the probe readmits b", Duration::from_secs(10), || {
            cluster.status().in_rotation == 2
        })
        .await;
    });
}

#[tokio::test(start_paused = true)]
async fn a_backend_whose_calls_fail_is_ejected_for_a_while_though_it_connects_fine() {
    let (a, _) = mock("a", false);
    let (b, _) = mock("b", false);
    let (c, _) = mock("c", false);
    let detection = millpond::cluster::OutlierDetection::new()
        .consecutive_failures(3)
        .max_ejected_percent(50)
        .base_ejection(Duration::from_secs(10));
    let cluster = Cluster::builder()
        .backend(a)
        .backend(b)
        .backend(c)
        .outlier_detection(detection)
        .probe_interval(Duration::from_secs(1))
        .build()
        .unwrap();
    // Queries on b fail (a replica far behind, say); its connections are fine.
    let mut failures = 0;
    while failures < 3 {
        let conn = cluster.get().await.unwrap();
        if conn.backend() == "b" {
            conn.report_failure();
            failures += 1;
        } else {
            conn.report_success(Duration::from_millis(5));
        }
    }
    let status = cluster.status();
    assert!(status.backends[1].outlier_ejected && !status.backends[1].in_rotation);
    assert_eq!((status.in_rotation, status.backends[1].outlier_ejections), (2, 1));
    for _ in 0..6 {
        assert_ne!(cluster.get().await.unwrap().backend(), "b", "ejected: skipped by every pick");
    }
    // Its time is up: the next tick of the probe task brings it back.
    tokio::time::sleep(Duration::from_secs(11)).await;
    assert!(cluster.status().backends[1].in_rotation);
    let mut served = Vec::new();
    for _ in 0..3 {
        served.push(cluster.get().await.unwrap());
    }
    assert!(names(&served).contains(&"b"));
    let err = Cluster::builder()
        .backend(mock("x", false).0)
        .outlier_detection(millpond::cluster::OutlierDetection::new().consecutive_failures(0))
        .build()
        .map(drop)
        .unwrap_err();
    assert_eq!(err.path().as_deref(), Some("outlier_detection.consecutive_failures"));
}
