//! Feast's permission decision (`permissions/enforcer.py`): for each resource a request
//! touches, the permissions that cover it (its type, a name pattern, its required
//! tags) and every requested action; the first whose policy lets the user in grants
//! it; when all of them refuse, the request is refused with each one's reason; when
//! none covers it, the request is refused, unless the project has no permission at
//! all, in which case any authenticated user is let in.

use std::collections::BTreeMap;

use crate::registry::{Action, FeatureView, Permission, Policy, ResourceType, ViewKind};

/// Who is asking: what Feast's `User` holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub(crate) struct User {
    /// The name (`preferred_username`, `upn`, `azp`, `appid` or `sub` of a token).
    pub(crate) username: String,
    /// Roles.
    pub(crate) roles: Vec<String>,
    /// Groups.
    pub(crate) groups: Vec<String>,
    /// Namespaces (Kubernetes).
    pub(crate) namespaces: Vec<String>,
}

/// A registry object a request touches.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Resource<'a> {
    /// What kind of object it is.
    pub(crate) kind: ResourceKind,
    /// Its name.
    pub(crate) name: &'a str,
    /// Its tags.
    pub(crate) tags: &'a BTreeMap<String, String>,
}

impl<'a> Resource<'a> {
    /// A served view.
    pub(crate) fn view(view: &'a FeatureView) -> Self {
        Resource {
            kind: ResourceKind::of_view(view.kind),
            name: &view.name,
            tags: &view.tags,
        }
    }
}

/// The kinds of registry objects requests touch (Feast's classes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum ResourceKind {
    /// `FeatureView`.
    FeatureView,
    /// `StreamFeatureView` (a `FeatureView`).
    StreamFeatureView,
    /// `OnDemandFeatureView`.
    OnDemandFeatureView,
    /// `LabelView`.
    LabelView,
    /// `FeatureService`.
    FeatureService,
}

impl ResourceKind {
    /// The kind of a served view.
    fn of_view(kind: ViewKind) -> Self {
        match kind {
            ViewKind::Batch => ResourceKind::FeatureView,
            ViewKind::Stream => ResourceKind::StreamFeatureView,
            ViewKind::Label => ResourceKind::LabelView,
            ViewKind::WrittenOnDemand => ResourceKind::OnDemandFeatureView,
        }
    }

    /// Whether a permission of `t` covers this kind (Feast's `isinstance`: a
    /// `FeatureView` permission also covers stream feature views).
    fn is(self, t: ResourceType) -> bool {
        matches!(
            (self, t),
            (ResourceKind::FeatureView, ResourceType::FeatureView)
                | (
                    ResourceKind::StreamFeatureView,
                    ResourceType::FeatureView | ResourceType::StreamFeatureView
                )
                | (
                    ResourceKind::OnDemandFeatureView,
                    ResourceType::OnDemandFeatureView
                )
                | (ResourceKind::LabelView, ResourceType::LabelView)
                | (ResourceKind::FeatureService, ResourceType::FeatureService)
        )
    }

    /// Feast's class name (`to FeatureView:driver_stats`).
    fn class_name(self) -> &'static str {
        match self {
            ResourceKind::FeatureView => "FeatureView",
            ResourceKind::StreamFeatureView => "StreamFeatureView",
            ResourceKind::OnDemandFeatureView => "OnDemandFeatureView",
            ResourceKind::LabelView => "LabelView",
            ResourceKind::FeatureService => "FeatureService",
        }
    }

    /// Python's `repr` of Feast's class (`on <class '...'>/name`).
    fn class_repr(self) -> &'static str {
        match self {
            ResourceKind::FeatureView => "<class 'feast.feature_view.FeatureView'>",
            ResourceKind::StreamFeatureView => {
                "<class 'feast.stream_feature_view.StreamFeatureView'>"
            }
            ResourceKind::OnDemandFeatureView => {
                "<class 'feast.on_demand_feature_view.OnDemandFeatureView'>"
            }
            ResourceKind::LabelView => "<class 'feast.labeling.label_view.LabelView'>",
            ResourceKind::FeatureService => "<class 'feast.feature_service.FeatureService'>",
        }
    }
}

impl Action {
    /// The action's value (`read_online`).
    fn value(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Describe => "describe",
            Action::Update => "update",
            Action::Delete => "delete",
            Action::ReadOnline => "read_online",
            Action::ReadOffline => "read_offline",
            Action::WriteOnline => "write_online",
            Action::WriteOffline => "write_offline",
        }
    }
}

/// Python's `repr` of a list of strings.
fn py_list<S: AsRef<str>>(items: impl IntoIterator<Item = S>) -> String {
    let quoted: Vec<String> = items
        .into_iter()
        .map(|s| format!("'{}'", s.as_ref()))
        .collect();
    format!("[{}]", quoted.join(", "))
}

impl Permission {
    /// Whether it covers `resource` for every one of `actions`.
    fn covers(&self, resource: &Resource<'_>, actions: &[Action]) -> bool {
        let typed = self.types.is_empty() || self.types.iter().any(|t| resource.kind.is(*t));
        let named = self.name_patterns.is_empty()
            || self.name_patterns.iter().any(|p| p.is_match(resource.name));
        let tagged = self
            .required_tags
            .iter()
            .all(|(k, v)| resource.tags.get(k) == Some(v));
        !self.covers_nothing
            && typed
            && named
            && tagged
            && actions.iter().all(|a| self.actions.contains(a))
    }
}

impl Policy {
    /// Whether `user` is let in, and why not when it is not (Feast's explanations).
    fn admits(&self, user: &User) -> Result<(), String> {
        let any = |wanted: &[String], have: &[String]| wanted.iter().any(|w| have.contains(w));
        match self {
            Policy::AllowAll => Ok(()),
            Policy::Roles(r) if any(r, &user.roles) => Ok(()),
            Policy::Roles(r) => Err(format!("Requires roles {}", py_list(r))),
            Policy::Groups(g) if any(g, &user.groups) => Ok(()),
            Policy::Groups(_) => Err("User is not added into the permitted groups".into()),
            Policy::Namespaces(n) if any(n, &user.namespaces) => Ok(()),
            Policy::Namespaces(_) => Err("User is not added into the permitted namespaces".into()),
            Policy::GroupsOrNamespaces(g, n)
                if any(g, &user.groups) || any(n, &user.namespaces) =>
            {
                Ok(())
            }
            Policy::GroupsOrNamespaces(..) => {
                Err("User must be in at least one of the permitted groups or namespaces".into())
            }
        }
    }
}

/// Whether `user` may do `actions` on every one of `resources`; the refusal's
/// message (Feast's `FeastPermissionError` details) otherwise.
pub(crate) fn decide(
    permissions: &[std::sync::Arc<Permission>],
    user: &User,
    resources: &[Resource<'_>],
    actions: &[Action],
) -> Result<(), String> {
    if permissions.is_empty() {
        if user.username.is_empty() {
            return Err(
                "No permissions defined and no authenticated user context. Access denied.".into(),
            );
        }
        return Ok(());
    }
    for resource in resources {
        let covering: Vec<&Permission> = permissions
            .iter()
            .map(AsRef::as_ref)
            .filter(|p| p.covers(resource, actions))
            .collect();
        if covering.is_empty() {
            let actions: Vec<String> = actions
                .iter()
                .map(|a| {
                    format!(
                        "<AuthzedAction.{}: '{}'>",
                        a.value().to_uppercase(),
                        a.value()
                    )
                })
                .collect();
            return Err(format!(
                "No permissions defined to manage [{}] on {}/{}.",
                actions.join(", "),
                resource.kind.class_repr(),
                resource.name
            ));
        }
        let mut reasons = Vec::new();
        let mut granted = false;
        for p in covering {
            match p.policy.admits(user) {
                Ok(()) => {
                    granted = true;
                    break;
                }
                Err(why) => reasons.push(format!(
                    "Permission {} denied execution of {} to {}:{}: {why}",
                    p.name,
                    py_list(actions.iter().map(|a| a.value().to_uppercase())),
                    resource.kind.class_name(),
                    resource.name
                )),
            }
        }
        if !granted {
            return Err(reasons.join(","));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn permission(
        name: &str,
        types: Vec<ResourceType>,
        patterns: &[&str],
        actions: Vec<Action>,
        policy: Policy,
    ) -> Arc<Permission> {
        Arc::new(Permission {
            name: name.into(),
            types,
            name_patterns: patterns
                .iter()
                .map(|p| regex::Regex::new(&format!("^(?:{p})$")).expect("pattern"))
                .collect(),
            required_tags: BTreeMap::new(),
            covers_nothing: false,
            actions,
            policy,
        })
    }

    fn user(roles: &[&str]) -> User {
        User {
            username: "alice".into(),
            roles: roles.iter().map(|r| r.to_string()).collect(),
            ..User::default()
        }
    }

    #[test]
    fn decisions_and_messages_follow_feast() {
        let no_tags = BTreeMap::new();
        let view = |name| Resource {
            kind: ResourceKind::FeatureView,
            name,
            tags: &no_tags,
        };
        let readers = permission(
            "readers",
            vec![ResourceType::FeatureView],
            &["driver.*"],
            vec![Action::ReadOnline],
            Policy::Roles(vec!["reader".into()]),
        );
        let perms = vec![readers];
        let read = [Action::ReadOnline];
        assert_eq!(
            decide(&perms, &user(&["reader"]), &[view("driver_stats")], &read),
            Ok(())
        );
        assert_eq!(
            decide(&perms, &user(&[]), &[view("driver_stats")], &read),
            Err("Permission readers denied execution of ['READ_ONLINE'] to FeatureView:driver_stats: Requires roles ['reader']".into())
        );
        // A pattern matches whole names only; nothing covers `secret_stats`.
        assert_eq!(
            decide(&perms, &user(&["reader"]), &[view("secret_stats")], &read),
            Err("No permissions defined to manage [<AuthzedAction.READ_ONLINE: 'read_online'>] on <class 'feast.feature_view.FeatureView'>/secret_stats.".into())
        );
        // Every requested action must be in one permission.
        assert!(
            decide(
                &perms,
                &user(&["reader"]),
                &[view("driver_stats")],
                &[Action::ReadOnline, Action::WriteOnline]
            )
            .is_err()
        );
        // No permission at all: any authenticated user.
        assert_eq!(decide(&[], &user(&[]), &[view("x")], &read), Ok(()));
        assert!(decide(&[], &User::default(), &[view("x")], &read).is_err());
        // A FeatureView permission covers stream views too, not on-demand views.
        let stream = Resource {
            kind: ResourceKind::StreamFeatureView,
            name: "driver_stream",
            tags: &no_tags,
        };
        assert_eq!(decide(&perms, &user(&["reader"]), &[stream], &read), Ok(()));
        let odfv = Resource {
            kind: ResourceKind::OnDemandFeatureView,
            name: "driver_odfv",
            tags: &no_tags,
        };
        assert!(decide(&perms, &user(&["reader"]), &[odfv], &read).is_err());
    }

    #[test]
    fn the_first_admitting_permission_grants_and_all_refusals_are_named() {
        let no_tags = BTreeMap::new();
        let svc = Resource {
            kind: ResourceKind::FeatureService,
            name: "svc",
            tags: &no_tags,
        };
        let perms = vec![
            permission(
                "p_reader",
                vec![],
                &[],
                vec![Action::ReadOnline],
                Policy::Roles(vec!["reader".into()]),
            ),
            permission(
                "p_group",
                vec![],
                &[],
                vec![Action::ReadOnline],
                Policy::Groups(vec!["team".into()]),
            ),
        ];
        let mut in_group = user(&[]);
        in_group.groups = vec!["team".into()];
        assert_eq!(
            decide(&perms, &in_group, &[svc], &[Action::ReadOnline]),
            Ok(())
        );
        assert_eq!(
            decide(&perms, &user(&[]), &[svc], &[Action::ReadOnline]),
            Err("Permission p_reader denied execution of ['READ_ONLINE'] to FeatureService:svc: Requires roles ['reader'],Permission p_group denied execution of ['READ_ONLINE'] to FeatureService:svc: User is not added into the permitted groups".into())
        );
    }

    #[test]
    fn required_tags_restrict_what_a_permission_covers() {
        let mut p = permission(
            "team_a",
            vec![],
            &[],
            vec![Action::ReadOnline],
            Policy::AllowAll,
        );
        Arc::get_mut(&mut p)
            .expect("unshared")
            .required_tags
            .insert("team".into(), "a".into());
        let a: BTreeMap<String, String> = [("team".to_string(), "a".to_string())].into();
        let b: BTreeMap<String, String> = [("team".to_string(), "b".to_string())].into();
        let view = |tags| Resource {
            kind: ResourceKind::FeatureView,
            name: "v",
            tags,
        };
        let perms = vec![p];
        assert_eq!(
            decide(&perms, &user(&[]), &[view(&a)], &[Action::ReadOnline]),
            Ok(())
        );
        assert!(decide(&perms, &user(&[]), &[view(&b)], &[Action::ReadOnline]).is_err());
    }
}
