//! `sfpipe bench --brokers` on a real Redis and a real RabbitMQ, small: every queue moves every
//! message and every load is exact on each. (Its speeds are what the bench reports, not asserted.)

use sfpipe_tests::rabbitmq::RabbitServer;
use sfpipe_tests::redis::RedisServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_bench_measures_each_broker_and_the_in_process_queue() {
    let redis = RedisServer::start().await;
    let rabbit = RabbitServer::start().await;
    let bench = sfpipe_cli::bench::brokers::run(
        &[redis.url.clone(), rabbit.url.clone()],
        300,
        2_000,
        2,
        500,
    )
    .await
    .expect("the bench");
    let queues: Vec<&str> = bench.queues.iter().map(|q| q.broker.as_str()).collect();
    assert_eq!(queues.len(), 3, "{queues:?}");
    assert_eq!(queues[0], "in-process");
    assert!(queues[1].starts_with("redis://"), "{queues:?}");
    assert!(
        queues[2].starts_with("amqp://guest@"),
        "the password is left out: {queues:?}"
    );
    for queue in &bench.queues {
        assert_eq!(queue.messages, 300);
        assert!(queue.sends_per_s > 0.0 && queue.receive_deletes_per_s > 0.0);
    }
    assert_eq!(bench.pipelines.len(), 3);
    for load in &bench.pipelines {
        assert!(load.exact, "{load:?}");
        assert_eq!((load.objects, load.rows), (2, 4_000), "{load:?}");
    }
    let table = sfpipe_cli::bench::brokers::render(&bench);
    assert_eq!(table.matches("| yes |").count(), 3, "{table}");
}
