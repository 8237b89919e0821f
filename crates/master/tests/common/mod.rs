//! What the memory tests share: a global allocator counting live heap bytes, a core
//! with agents like the state benchmark's, and the offers a core sent.

use meseta_api::internal::{RegisterAgent, LINK_VERSION};
use meseta_api::scheduler::Event;
use meseta_api::{AgentInfo, MasterInfo, Offer, Resources};
use meseta_master::core::{Core, CoreConfig, Effect};
use meseta_master::registry::RegistryState;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Heap bytes allocated and not yet freed, by the whole process (a test binary measuring
/// with it runs one test).
pub fn live_heap() -> isize {
    LIVE.load(Ordering::Relaxed)
}

/// When the tests' cores start.
pub const T0: f64 = 1_000_000.0;

/// A core with `agents` registered agents of the benchmark's hollow agent's resources.
pub fn core_with_agents(agents: usize) -> Core {
    let info: MasterInfo = serde_json::from_value(serde_json::json!({
        "id": "0b5c8d2e-5e0e-4a4f-9e57-6d1f7e2a9c11", "ip": 16777343, "port": 5050
    }))
    .unwrap();
    let config = CoreConfig {
        offer_timeout: None,
        agent_ping_timeout: 75.0,
        agent_reregister_timeout: 600.0,
        min_allocatable: meseta_master::allocator::default_min_allocatable(),
    };
    let mut core = Core::new(info, config, RegistryState::default(), T0);
    for i in 0..agents {
        let mut info: AgentInfo = serde_json::from_value(
            serde_json::json!({"hostname": format!("host-{i}"), "port": 5051}),
        )
        .unwrap();
        info.resources = Resources::parse("cpus:24;mem:4096;disk:100000;ports:[31000-32000]")
            .unwrap()
            .into_vec();
        let register = RegisterAgent {
            version: LINK_VERSION,
            agent_info: info,
            endpoint: format!("10.0.{}.{}:5051", i / 256, i % 256),
            tasks: vec![],
            executors: vec![],
            frameworks: vec![],
            capabilities: vec![],
            checkpointed_resources: vec![],
        };
        core.register_agent(T0, format!("L{i}"), register).unwrap();
    }
    core
}

/// The offers among `effects`, with the stream each went to.
pub fn offers(effects: &[Effect]) -> Vec<(String, Offer)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::ToStream(stream, Event::Offers(o)) => Some((stream.clone(), o.offers.clone())),
            _ => None,
        })
        .flat_map(|(stream, offers)| offers.into_iter().map(move |o| (stream.clone(), o)))
        .collect()
}
