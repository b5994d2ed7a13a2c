//! The tenant the in-process authorization benchmarks share (`access_check` here and the
//! side-by-side comparison with Cedar and casbin in crates/cedar-oracle/benches): 10,000
//! resources in a four-level tree, 100,000 users each in two of 1,000 groups, 1,000,000
//! assignments (a fifth to groups, 40 % active) over five built-in roles, every schedule in
//! effect at [`now`]; and one mix of AuthZEN questions about it.

use jiff::{SignedDuration, Timestamp};
use rolegate_core::access::AccessIndex;
use rolegate_core::assignment::{AssignmentState, RoleAssignment};
use rolegate_core::permissions::Plane;
use rolegate_core::schedule::Schedule;

/// A xorshift generator: the same tenant and questions on every run.
pub struct Rng(pub u64);

impl Rng {
    /// A number below `n`.
    pub fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// Owner, Contributor, Reader, Virtual Machine Contributor, Storage Blob Data Contributor.
pub const ROLES: [&str; 5] = [
    "8e3af657-a8ff-443c-a75c-2fe8c4bcb635",
    "b24988ac-6180-42a0-ab88-20f7382dd24c",
    "acdd72a7-3385-48ef-bd42-f606fba81ae7",
    "9980e02c-c2be-4d73-94e8-173b1dc7cf3c",
    "ba92f5b4-2d11-453d-a403-e96b0029c9fe",
];

/// The operations the questions ask about.
pub const OPERATIONS: [(&str, Plane); 4] = [
    (
        "Microsoft.Compute/virtualMachines/start/action",
        Plane::Control,
    ),
    ("Microsoft.Compute/virtualMachines/read", Plane::Control),
    (
        "Microsoft.Authorization/roleAssignments/write",
        Plane::Control,
    ),
    (
        "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read",
        Plane::Data,
    ),
];

/// The instant every question is asked at.
pub fn now() -> Timestamp {
    Timestamp::from_second(1_800_000_000).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// The tenant as data, for each engine to load its own way.
pub struct Tenant {
    /// Resources, parents first: (id, parent).
    pub resources: Vec<(String, Option<String>)>,
    /// User ids.
    pub users: Vec<String>,
    /// (group, user).
    pub memberships: Vec<(String, String)>,
    /// Every assignment, with the index of its role in [`ROLES`].
    pub assignments: Vec<(RoleAssignment, usize)>,
}

impl Tenant {
    /// The tenant of the module's description.
    pub fn generate() -> Self {
        let mut resources: Vec<(String, Option<String>)> =
            (0..10).map(|i| (format!("mg{i}"), None)).collect();
        for (level, count, parents, parent_prefix) in [
            ("sub", 100, 10, "mg"),
            ("rg", 1_000, 100, "sub"),
            ("vm", 8_890, 1_000, "rg"),
        ] {
            for i in 0..count {
                resources.push((
                    format!("{level}{i}"),
                    Some(format!("{parent_prefix}{}", i % parents)),
                ));
            }
        }
        let users: Vec<String> = (0..100_000).map(|i| format!("user{i}")).collect();
        let mut memberships = Vec::new();
        for (i, u) in users.iter().enumerate() {
            memberships.push((format!("group{}", i % 1_000), u.clone()));
            memberships.push((format!("group{}", (i * 7) % 1_000), u.clone()));
        }
        let mut rng = Rng(0x9E3779B97F4A7C15);
        let mut assignments = Vec::with_capacity(1_000_000);
        for i in 0..1_000_000 {
            let subject = if i % 5 == 0 {
                format!("group{}", rng.below(1_000))
            } else {
                users[rng.below(users.len())].clone()
            };
            let resource = resources[rng.below(resources.len())].0.clone();
            let role = rng.below(ROLES.len());
            let a = RoleAssignment {
                id: format!("{i:032x}"),
                role_definition_id: format!("{resource}-role{role}"),
                resource_id: resource,
                subject_id: subject,
                state: if rng.below(10) < 6 {
                    AssignmentState::Eligible
                } else {
                    AssignmentState::Active
                },
                linked_eligible_id: None,
                schedule: Schedule {
                    start: now() - SignedDuration::from_hours(24),
                    end: Some(now() + SignedDuration::from_hours(24 * 90)),
                },
                request_id: "seed".into(),
            };
            assignments.push((a, role));
        }
        Self {
            resources,
            users,
            memberships,
            assignments,
        }
    }

    /// Rolegate's access index over the tenant.
    pub fn index(&self) -> AccessIndex {
        let mut ix = AccessIndex::new();
        for (r, parent) in &self.resources {
            ix.add_resource(r, parent.as_deref());
            for (k, template) in ROLES.iter().enumerate() {
                ix.add_role(&format!("{r}-role{k}"), template);
            }
        }
        for (g, u) in &self.memberships {
            ix.add_membership(g, u);
        }
        for (a, role) in &self.assignments {
            ix.upsert(a, *role == 0);
        }
        ix
    }

    /// `n` questions (user, resource, operation, plane): every other one random over users,
    /// resources and [`OPERATIONS`] (nearly all denied), the others about an active
    /// assignment's resource, asked by its holder or a member of its group, for an operation
    /// its role grants (about half of all permitted, as authzen.md §12 asks).
    pub fn questions(&self, n: usize, seed: u64) -> Vec<(String, String, &'static str, Plane)> {
        let mut rng = Rng(seed);
        (0..n)
            .map(|i| {
                if i % 2 == 1 {
                    return self.granted_question(&mut rng);
                }
                let (op, plane) = OPERATIONS[rng.below(OPERATIONS.len())];
                (
                    self.users[rng.below(self.users.len())].clone(),
                    self.resources[rng.below(self.resources.len())].0.clone(),
                    op,
                    plane,
                )
            })
            .collect()
    }

    fn granted_question(&self, rng: &mut Rng) -> (String, String, &'static str, Plane) {
        loop {
            let (a, role) = &self.assignments[rng.below(self.assignments.len())];
            if a.state != AssignmentState::Active {
                continue;
            }
            // Group g's members are the users whose number is g modulo 1,000.
            let user = match a.subject_id.strip_prefix("group") {
                Some(g) => {
                    let g: usize = g.parse().unwrap_or_default();
                    self.users[g + 1_000 * rng.below(self.users.len() / 1_000)].clone()
                }
                None => a.subject_id.clone(),
            };
            // Reader reads, Storage Blob Data Contributor reads blobs, the others start VMs.
            let (op, plane) = match role {
                2 => OPERATIONS[1],
                4 => OPERATIONS[3],
                _ => OPERATIONS[0],
            };
            return (user, a.resource_id.clone(), op, plane);
        }
    }
}
