//! The evaluator's own tests: each IAM rule it follows, on small policies.

use serde_json::json;

use super::*;

const ROLE: &str = "arn:aws:iam::123456789012:role/launch";

fn decide(identity: Value, request: Request) -> Decision {
    evaluate(&Policies { identity: vec![&identity], ..Default::default() }, &request)
}

#[test]
fn wildcards() {
    assert!(glob("arn:aws:s3:::sagemaker-project-*", "arn:aws:s3:::sagemaker-project-p-1"));
    assert!(glob("a?c*", "abcdef") && glob("*", "") && glob("a*b*c", "aXXbYYc"));
    assert!(!glob("arn:aws:s3:::sagemaker-project-*", "arn:aws:s3:::other") && !glob("a?c", "ac"));
}

#[test]
fn allow_deny_and_their_negations() {
    let policy = json!({ "Statement": [
        { "Effect": "Allow", "Action": ["s3:Get*", "sqs:SendMessage"], "Resource": "arn:aws:s3:::b/*" },
        { "Effect": "Allow", "NotAction": "sqs:DeleteQueue", "Resource": "arn:aws:sqs:*" },
        { "Sid": "NoSecrets", "Effect": "Deny", "Action": "s3:GetObject", "NotResource": "arn:aws:s3:::b/public/*" },
    ]});
    let ask = |action: &str, resource: &str| decide(policy.clone(), Request::new(ROLE, action, resource));
    assert_eq!(ask("s3:getobjectversion", "arn:aws:s3:::b/k"), Decision::Allowed, "actions ignore case");
    assert_eq!(ask("s3:GetObject", "arn:aws:s3:::b/public/x"), Decision::Allowed);
    assert_eq!(ask("s3:GetObject", "arn:aws:s3:::b/k"), Decision::ExplicitlyDenied("NoSecrets".into()));
    assert_eq!(ask("s3:PutObject", "arn:aws:s3:::b/k"), Decision::ImplicitlyDenied);
    assert_eq!(ask("sqs:PurgeQueue", "arn:aws:sqs:us-east-1:123456789012:q"), Decision::Allowed);
    assert_eq!(ask("sqs:DeleteQueue", "arn:aws:sqs:us-east-1:123456789012:q"), Decision::ImplicitlyDenied);
}

/// IAM user guide, "Cross-account policy evaluation logic": across accounts the identity
/// policy and the resource policy must both allow; naming an account root in a resource
/// policy delegates to that account's identity policies, in its own account too.
#[test]
fn across_accounts_both_sides_must_allow_and_a_root_principal_only_delegates() {
    let package = "arn:aws:sagemaker:eu-west-1:123456789012:model-package/churn-p-1/3";
    let deployer = "arn:aws:iam::222222222222:role/deploy";
    let resource_policy = json!({ "Statement": [{
        "Effect": "Allow", "Principal": { "AWS": "arn:aws:iam::222222222222:root" },
        "Action": "sagemaker:DescribeModelPackage", "Resource": "arn:aws:sagemaker:eu-west-1:123456789012:model-package/churn-p-1/*"
    }]});
    let identity =
        json!({ "Statement": [{ "Effect": "Allow", "Action": "sagemaker:DescribeModelPackage", "Resource": "*" }]});
    let nothing = json!({ "Statement": [] });
    let ask = |identity: &Value, resource: Option<&Value>, principal: &str| {
        let policies = Policies { identity: vec![identity], resource, boundary: None };
        evaluate(&policies, &Request::new(principal, "sagemaker:DescribeModelPackage", package))
    };
    assert_eq!(ask(&identity, Some(&resource_policy), deployer), Decision::Allowed);
    assert_eq!(ask(&nothing, Some(&resource_policy), deployer), Decision::ImplicitlyDenied, "the resource side alone");
    assert_eq!(ask(&identity, None, deployer), Decision::ImplicitlyDenied, "the identity side alone");
    let stranger = "arn:aws:iam::333333333333:role/deploy";
    assert_eq!(ask(&identity, Some(&resource_policy), stranger), Decision::ImplicitlyDenied, "an account not named");

    // S3 ARNs name no account: the request's s3:ResourceAccount says whose the bucket is.
    let object = "arn:aws:s3:::sagemaker-project-p-1/churn/models/model.tar.gz";
    let read = json!({ "Statement": [{ "Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::sagemaker-project-*/*" }]});
    let get = Request::new(deployer, "s3:GetObject", object).with("s3:ResourceAccount", &["123456789012"]);
    assert_eq!(decide(read.clone(), get), Decision::ImplicitlyDenied, "another account's bucket, no bucket policy");

    // Within one account, a root principal delegates: the identity policy decides.
    let local = "arn:aws:iam::123456789012:role/reader";
    let own_root = json!({ "Statement": [{
        "Effect": "Allow", "Principal": { "AWS": "arn:aws:iam::123456789012:root" },
        "Action": "sagemaker:DescribeModelPackage", "Resource": "*"
    }]});
    assert_eq!(ask(&nothing, Some(&own_root), local), Decision::ImplicitlyDenied);
    let named = json!({ "Statement": [{
        "Effect": "Allow", "Principal": { "AWS": local }, "Action": "sagemaker:DescribeModelPackage", "Resource": "*"
    }]});
    assert_eq!(ask(&nothing, Some(&named), local), Decision::Allowed, "a resource policy naming the role itself");
}

#[test]
fn conditions_with_present_and_absent_keys() {
    let policy = json!({ "Statement": [{
        "Effect": "Allow", "Action": "s3:GetObject", "Resource": "*",
        "Condition": { "StringEquals": { "s3:ExistingObjectTag/servicecatalog:provisioning": "true" } }
    }]});
    let tagged = Request::new(ROLE, "s3:GetObject", "arn:aws:s3:::sc-bucket/t")
        .with("s3:ExistingObjectTag/servicecatalog:provisioning", &["true"]);
    assert_eq!(decide(policy.clone(), tagged), Decision::Allowed);
    let untagged = Request::new(ROLE, "s3:GetObject", "arn:aws:s3:::sc-bucket/t");
    assert_eq!(decide(policy, untagged), Decision::ImplicitlyDenied, "an absent key fails the condition");

    let deny_unless = json!({ "Statement": [
        { "Effect": "Allow", "Action": "*", "Resource": "*" },
        { "Effect": "Deny", "Action": "*", "Resource": "*", "Condition": { "Bool": { "aws:SecureTransport": "false" } } },
        { "Effect": "Deny", "Action": "secretsmanager:GetSecretValue", "Resource": "*",
          "Condition": { "ArnNotEquals": { "aws:PrincipalArn": ["arn:aws:iam::123456789012:role/checkin"] } } },
    ]});
    let read = |principal: &str| {
        Request::new(principal, "secretsmanager:GetSecretValue", "arn:aws:secretsmanager:r:123456789012:secret:t")
    };
    assert_eq!(decide(deny_unless.clone(), read("arn:aws:iam::123456789012:role/checkin")), Decision::Allowed);
    assert_eq!(decide(deny_unless.clone(), read(ROLE)), Decision::ExplicitlyDenied("#2".into()));
    let plain = read("arn:aws:iam::123456789012:role/checkin").with("aws:SecureTransport", &["false"]);
    assert_eq!(decide(deny_unless, plain), Decision::ExplicitlyDenied("#1".into()));
}

#[test]
fn if_exists_null_and_set_qualifiers() {
    let holds = |operator: &str, given: Option<&[&str]>, wanted: &[&str]| {
        let given: Option<Vec<String>> = given.map(|g| g.iter().map(|s| (*s).to_owned()).collect());
        let wanted: Vec<String> = wanted.iter().map(|s| (*s).to_owned()).collect();
        condition_holds(operator, given.as_deref(), &wanted)
    };
    assert!(holds("StringEqualsIfExists", None, &["x"]));
    assert!(!holds("StringEquals", None, &["x"]));
    assert!(holds("StringNotEquals", None, &["x"]));
    assert!(holds("Null", None, &["true"]) && !holds("Null", Some(&["v"]), &["true"]));
    assert!(holds("ForAllValues:StringLike", Some(&["a1", "a2"]), &["a*"]));
    assert!(!holds("ForAllValues:StringLike", Some(&["a1", "b2"]), &["a*"]));
    assert!(holds("ForAnyValue:StringEquals", Some(&["b", "a"]), &["a"]));
    assert!(holds(
        "StringLike",
        Some(&["project_path:ml/churn:ref_type:branch:ref:main"]),
        &["project_path:ml/*:ref_type:branch:ref:main"]
    ));
    assert!(holds("NumericLessThan", Some(&["3"]), &["5"]));
}

/// AmazonSageMakerCanvasFullAccess grants `iam:PassRole` only where
/// `aws:ResourceAccount` is `${aws:PrincipalAccount}`.
#[test]
fn policy_variables_take_the_requests_values() {
    let policy = json!({ "Statement": [{
        "Effect": "Allow", "Action": "iam:PassRole", "Resource": "arn:aws:iam::*:role/${aws:PrincipalAccount}-*",
        "Condition": { "StringEquals": { "aws:ResourceAccount": "${aws:PrincipalAccount}" } }
    }]});
    let pass = |role: &str| decide(policy.clone(), Request::new(ROLE, "iam:PassRole", role));
    assert_eq!(pass("arn:aws:iam::123456789012:role/123456789012-model"), Decision::Allowed);
    assert_eq!(pass("arn:aws:iam::123456789012:role/222222222222-model"), Decision::ImplicitlyDenied);
    assert_eq!(pass("arn:aws:iam::222222222222:role/123456789012-model"), Decision::ImplicitlyDenied);
    // Only the resource part of an ARN takes variables.
    let in_account = json!({ "Statement": [{
        "Effect": "Allow", "Action": "iam:PassRole", "Resource": "arn:aws:iam::${aws:PrincipalAccount}:role/*"
    }]});
    let request = Request::new(ROLE, "iam:PassRole", "arn:aws:iam::123456789012:role/model");
    assert_eq!(decide(in_account, request), Decision::ImplicitlyDenied);
    let context = BTreeMap::from([("aws:username".to_owned(), vec!["ann".to_owned()])]);
    assert_eq!(expand("home/${aws:username}/${*}${?}${$}", &context).as_deref(), Some("home/ann/*?$"));
    assert_eq!(expand("home/${aws:userid}", &context), None, "a key the request lacks");
}

#[test]
fn resource_policies_name_their_principals_and_boundaries_cap_identities() {
    let bucket_policy = json!({ "Statement": [{
        "Effect": "Allow", "Principal": { "AWS": ROLE }, "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/*"
    }]});
    let none = json!({ "Statement": [] });
    let get = |who: &str| Request::new(who, "s3:GetObject", "arn:aws:s3:::b/k");
    let with = |identity: &Value, who: &str| {
        evaluate(&Policies { identity: vec![identity], resource: Some(&bucket_policy), boundary: None }, &get(who))
    };
    assert_eq!(with(&none, ROLE), Decision::Allowed, "the bucket policy names the role");
    assert_eq!(with(&none, "arn:aws:iam::123456789012:role/other"), Decision::ImplicitlyDenied);

    let admin = json!({ "Statement": [{ "Effect": "Allow", "Action": "*", "Resource": "*" }] });
    let boundary = json!({ "Statement": [{ "Effect": "Allow", "Action": "s3:*", "Resource": "*" }] });
    let capped = |action: &str, resource: &str| {
        let request = Request::new(ROLE, action, resource);
        evaluate(&Policies { identity: vec![&admin], resource: None, boundary: Some(&boundary) }, &request)
    };
    assert_eq!(capped("s3:PutObject", "arn:aws:s3:::x/k"), Decision::Allowed);
    let role = "arn:aws:iam::123456789012:role/new";
    assert_eq!(capped("iam:CreateRole", role), Decision::ImplicitlyDenied, "the boundary caps an admin policy");
}

/// Found by the second opinion: a KMS key's policy decides, even within its account.
#[test]
fn a_kms_key_takes_its_key_policy() {
    let key = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab";
    let identity = json!({ "Statement": [{ "Effect": "Allow", "Action": "kms:Decrypt", "Resource": "*" }] });
    let delegating = json!({ "Statement": [{
        "Effect": "Allow", "Principal": { "AWS": "arn:aws:iam::123456789012:root" }, "Action": "kms:*", "Resource": "*"
    }]});
    let none = json!({ "Statement": [] });
    let ask = |identity: &Value, key_policy: Option<&Value>| {
        let policies = Policies { identity: vec![identity], resource: key_policy, boundary: None };
        evaluate(&policies, &Request::new(ROLE, "kms:Decrypt", key))
    };
    assert_eq!(ask(&identity, None), Decision::ImplicitlyDenied, "an identity policy alone");
    assert_eq!(ask(&identity, Some(&delegating)), Decision::Allowed);
    assert_eq!(ask(&none, Some(&delegating)), Decision::ImplicitlyDenied, "the key policy delegates to IAM");
}
