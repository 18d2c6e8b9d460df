//! [`Reviewer`] for Kubernetes: one TokenReview per token, one SubjectAccessReview per access, made with
//! the operator's client (the install binds `system:auth-delegator`).
//!
//! It caches nothing and decides nothing (api/ does both). It never logs or keeps the token it sends.

use futures::FutureExt;
use futures::future::BoxFuture;
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec};
use kube::api::{Api, PostParams};

use super::write::map_kube_error;
use crate::provider::{Access, Result, ReviewedUser, Reviewer};

pub struct KubeReviewer {
    client: kube::Client,
}

impl KubeReviewer {
    pub fn new(client: kube::Client) -> KubeReviewer {
        KubeReviewer { client }
    }
}

/// The SubjectAccessReview asking whether `user` may do `access`.
pub fn access_review(user: &ReviewedUser, access: &Access) -> SubjectAccessReview {
    let some = |s: &str| Some(s.to_string()).filter(|s| !s.is_empty());
    SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(user.name.clone()),
            groups: Some(user.groups.clone()).filter(|g| !g.is_empty()),
            resource_attributes: Some(ResourceAttributes {
                group: some(access.group),
                resource: some(access.resource),
                subresource: some(access.subresource),
                verb: some(access.verb),
                namespace: some(&access.namespace),
                name: some(&access.name),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    }
}

impl Reviewer for KubeReviewer {
    fn review_token(&self, token: &str) -> BoxFuture<'_, Result<Option<ReviewedUser>>> {
        let review = TokenReview {
            spec: TokenReviewSpec { token: token.to_string(), ..Default::default() },
            ..Default::default()
        };
        async move {
            let reviewed = Api::<TokenReview>::all(self.client.clone())
                .create(&PostParams::default(), &review)
                .await
                .map_err(|e| map_kube_error(e, "a TokenReview"))?;
            Ok(reviewed.status.filter(|s| s.authenticated == Some(true)).and_then(|s| s.user).and_then(|u| {
                Some(ReviewedUser {
                    name: u.username.filter(|n| !n.is_empty())?,
                    groups: u.groups.unwrap_or_default(),
                })
            }))
        }
        .boxed()
    }

    fn review_access<'a>(
        &'a self,
        user: &'a ReviewedUser,
        access: &'a Access,
    ) -> BoxFuture<'a, Result<bool>> {
        async move {
            let reviewed = Api::<SubjectAccessReview>::all(self.client.clone())
                .create(&PostParams::default(), &access_review(user, access))
                .await
                .map_err(|e| map_kube_error(e, "a SubjectAccessReview"))?;
            Ok(reviewed.status.is_some_and(|s| s.allowed))
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaling_is_reviewed_as_the_scale_subresource() {
        let user = ReviewedUser { name: "ci".into(), groups: vec!["ops".into()] };
        let access = Access {
            verb: "update",
            group: "machinist.dev",
            resource: "controllers",
            subresource: "scale",
            namespace: "team-a".into(),
            name: "web".into(),
        };
        let attrs = access_review(&user, &access).spec.resource_attributes.expect("attributes");
        assert_eq!(attrs.resource.as_deref(), Some("controllers"));
        assert_eq!(attrs.subresource.as_deref(), Some("scale"));
        assert_eq!(attrs.verb.as_deref(), Some("update"));
        assert_eq!(attrs.namespace.as_deref(), Some("team-a"));
        let listing = Access { subresource: "", name: String::new(), verb: "list", ..access };
        let attrs = access_review(&user, &listing).spec.resource_attributes.expect("attributes");
        assert_eq!((attrs.subresource, attrs.name), (None, None));
    }
}
