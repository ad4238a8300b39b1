//! Where a Batch operation's time goes, in one thread without the network: decode the
//! request, run each operation, encode the response (server side), then the client's
//! encode of the request and decode of the response.
//! `cargo run --release -p kmem-server --example batch_cost`

use std::sync::Arc;
use std::time::Instant;

use kmem_allocator::{ByteSize, Machine, MachineConfig};
use kmem_client::pb::{self, operation::Op};
use kmem_server::api::{Api, OpLimits};
use kmem_server::auth::Caller;
use prost::Message;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let m = Machine::boot(MachineConfig {
        memory: ByteSize(1 << 30),
        ..Default::default()
    })
    .unwrap();
    let api = Api::new(
        Arc::new(m),
        OpLimits {
            max_copy_bytes: 1 << 20,
        },
    );
    let caller = Caller::default();
    let n = 1000;
    let rounds = 2000;
    let (mut t_enc_req, mut t_dec_req, mut t_run, mut t_enc_resp, mut t_dec_resp) =
        (0u128, 0u128, 0u128, 0u128, 0u128);
    let mut live: Vec<u64> = vec![];
    for _ in 0..rounds {
        let t = Instant::now();
        let mut ops: Vec<pb::Operation> = live
            .drain(..)
            .map(|addr| pb::Operation {
                op: Some(Op::Kfree(Box::new(pb::KfreeRequest {
                    addr,
                    ..Default::default()
                }))),
            })
            .collect();
        let frees = ops.len();
        ops.extend((0..n - frees).map(|_| pb::Operation {
            op: Some(Op::Kmalloc(Box::new(pb::KmallocRequest {
                size: 64,
                ..Default::default()
            }))),
        }));
        let req = pb::BatchRequest {
            operations: ops,
            ..Default::default()
        }
        .encode_to_vec();
        let t1 = Instant::now();
        let r = pb::BatchRequest::decode(&req[..]).unwrap();
        let t2 = Instant::now();
        let results: Vec<_> = r
            .operations
            .iter()
            .map(|o| api.run_result(o.op.as_ref(), None, &caller))
            .collect();
        let t3 = Instant::now();
        let resp = pb::BatchResponse { results }.encode_to_vec();
        let t4 = Instant::now();
        let back = pb::BatchResponse::decode(&resp[..]).unwrap();
        live = back.results[frees..]
            .iter()
            .map(|r| r.allocation.as_ref().unwrap().addr)
            .collect();
        live.truncate(n / 2);
        let t5 = Instant::now();
        t_enc_req += (t1 - t).as_nanos();
        t_dec_req += (t2 - t1).as_nanos();
        t_run += (t3 - t2).as_nanos();
        t_enc_resp += (t4 - t3).as_nanos();
        t_dec_resp += (t5 - t4).as_nanos();
    }
    let per = |x: u128| x as f64 / (rounds * n) as f64;
    println!("ns per operation: client encode {:.0}, server decode {:.0}, run {:.0}, server encode {:.0}, client decode {:.0}",
        per(t_enc_req), per(t_dec_req), per(t_run), per(t_enc_resp), per(t_dec_resp));
}
