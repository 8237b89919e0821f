//! Picking resources out of an offer for a task.

use meseta_api::Resource;

/// Takes `wanted` scalar amounts (`("cpus", 0.5)`, …) from an offer's resources, in the
/// offer's order, keeping each piece's role, reservations and allocation info (so that an
/// ACCEPT names them exactly as offered). `None` when the offer has too little of one.
/// Revocable resources are not used.
pub fn take_scalars(offered: &[Resource], wanted: &[(&str, f64)]) -> Option<Vec<Resource>> {
    let mut taken = Vec::new();
    for &(name, amount) in wanted {
        let mut remaining = amount;
        for resource in offered
            .iter()
            .filter(|r| r.name == name && r.revocable.is_none())
        {
            if remaining <= 1e-9 {
                break;
            }
            let Some(available) = resource.scalar.map(|s| s.value).filter(|v| *v > 0.0) else {
                continue;
            };
            let take = round(remaining.min(available));
            let mut piece = resource.clone();
            if let Some(scalar) = piece.scalar.as_mut() {
                scalar.value = take;
            }
            taken.push(piece);
            remaining = round(remaining - take);
        }
        if remaining > 1e-9 {
            return None;
        }
    }
    Some(taken)
}

/// Mesos's fixed-point precision for scalars (three decimals).
fn round(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer() -> Vec<Resource> {
        serde_json::from_value(serde_json::json!([
            {"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.2}, "role": "web",
             "allocation_info": {"role": "web"}},
            {"name": "cpus", "type": "SCALAR", "scalar": {"value": 4.0}, "role": "*",
             "allocation_info": {"role": "web"}},
            {"name": "mem", "type": "SCALAR", "scalar": {"value": 1024.0}, "role": "*"},
            {"name": "ports", "type": "RANGES", "ranges": {"range": [{"begin": 31000, "end": 32000}]}}
        ]))
        .unwrap()
    }

    #[test]
    fn takes_from_several_pieces_keeping_their_roles() {
        let taken = take_scalars(&offer(), &[("cpus", 0.5), ("mem", 32.0)]).unwrap();
        let summary: Vec<_> = taken
            .iter()
            .map(|r| (r.name.as_str(), r.scalar.unwrap().value, r.role.as_deref()))
            .collect();
        assert_eq!(
            summary,
            [
                ("cpus", 0.2, Some("web")),
                ("cpus", 0.3, Some("*")),
                ("mem", 32.0, Some("*"))
            ]
        );
        assert!(taken[0].allocation_info.is_some());
    }

    #[test]
    fn refuses_offers_that_are_too_small() {
        assert!(take_scalars(&offer(), &[("cpus", 5.0)]).is_none());
        assert!(take_scalars(&offer(), &[("gpus", 1.0)]).is_none());
        assert_eq!(take_scalars(&offer(), &[("gpus", 0.0)]), Some(vec![]));
    }
}
