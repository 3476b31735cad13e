//! The Service Catalog stand-in (`src/moto_servicecatalog.py` on moto) answers each operation
//! publish, versions and doctor call in the shape of the AWS Service Catalog API reference, read
//! through the same SDK. Each test names the reference page and the field the product relies on.

use aws_sdk_servicecatalog::types::{
    ProductType, ProvisioningArtifactGuidance, ProvisioningArtifactProperties, ProvisioningArtifactType,
};
use testkit::moto::{REGION, moto};

fn catalog() -> aws_sdk_servicecatalog::Client {
    aws_sdk_servicecatalog::Client::new(&moto().sdk_config())
}

fn s3() -> aws_sdk_s3::Client {
    let sdk = moto().sdk_config();
    aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&sdk).force_path_style(true).build())
}

/// A template object in moto's S3, and its URL as publish passes it.
async fn template(name: &str) -> String {
    let bucket = format!("catalog-{name}");
    s3().create_bucket().bucket(&bucket).send().await.unwrap();
    s3().put_object().bucket(&bucket).key("t.yml").body(b"Resources: {}\n".to_vec().into()).send().await.unwrap();
    format!("https://{bucket}.s3.{REGION}.amazonaws.com/t.yml")
}

fn version(name: &str, url: &str) -> ProvisioningArtifactProperties {
    ProvisioningArtifactProperties::builder()
        .name(name)
        .description(format!("template sha256 {name}"))
        .info("LoadTemplateFromURL", url)
        .r#type(ProvisioningArtifactType::CloudFormationTemplate)
        .build()
}

/// A product with its first version: (product ID, version ID).
async fn product(name: &str) -> (String, String) {
    let url = template(name).await;
    let created = catalog()
        .create_product()
        .name(name)
        .owner("test")
        .product_type(ProductType::CloudFormationTemplate)
        .provisioning_artifact_parameters(version("v1", &url))
        .idempotency_token(format!("token-{name}"))
        .send()
        .await
        .unwrap();
    // API_CreateProduct, Response Elements: ProductViewDetail.ProductViewSummary.ProductId and
    // ProvisioningArtifactDetail.Id, the first version.
    let product = created.product_view_detail().unwrap().product_view_summary().unwrap().product_id().unwrap();
    let version = created.provisioning_artifact_detail().unwrap().id().unwrap();
    (product.to_owned(), version.to_owned())
}

async fn portfolio() -> String {
    let created = catalog().create_portfolio().display_name("p").provider_name("test").send().await.unwrap();
    created.portfolio_detail().unwrap().id().unwrap().to_owned()
}

#[tokio::test]
async fn create_product_answers_the_product_and_its_first_version() {
    let (product, version) = product("create-product").await;
    assert!(!product.is_empty() && version.starts_with("pa-"), "{product} {version}");
}

#[tokio::test]
async fn a_template_url_that_names_no_object_is_refused() {
    let missing = version("v1", &format!("https://nowhere-at-all.s3.{REGION}.amazonaws.com/t.yml"));
    let refused = catalog()
        .create_product()
        .name("no-template")
        .owner("test")
        .product_type(ProductType::CloudFormationTemplate)
        .provisioning_artifact_parameters(missing)
        .idempotency_token("no-template")
        .send()
        .await
        .unwrap_err();
    // API_CreateProduct, Errors: InvalidParametersException.
    assert!(refused.as_service_error().is_some_and(|e| e.is_invalid_parameters_exception()), "{refused:?}");
}

#[tokio::test]
async fn create_provisioning_artifact_is_idempotent_per_token() {
    let (product, _) = product("create-version").await;
    let url = template("create-version-2").await;
    let create = || {
        catalog()
            .create_provisioning_artifact()
            .product_id(&product)
            .parameters(version("v2", &url))
            .idempotency_token("v2-token")
            .send()
    };
    let (first, again) = (create().await.unwrap(), create().await.unwrap());
    // API_CreateProvisioningArtifact, Response Elements: ProvisioningArtifactDetail.Id.
    let id = first.provisioning_artifact_detail().unwrap().id().unwrap();
    assert_eq!(Some(id), again.provisioning_artifact_detail().unwrap().id(), "one token, one version");
}

#[tokio::test]
async fn list_and_update_provisioning_artifacts_carry_active_and_guidance() {
    let (product, version) = product("list-versions").await;
    catalog()
        .update_provisioning_artifact()
        .product_id(&product)
        .provisioning_artifact_id(&version)
        .guidance(ProvisioningArtifactGuidance::Deprecated)
        .send()
        .await
        .unwrap();
    let listed = catalog().list_provisioning_artifacts().product_id(&product).send().await.unwrap();
    // API_ListProvisioningArtifacts: ProvisioningArtifactDetails, each with Id, Name,
    // Description, Active and Guidance (data type ProvisioningArtifactDetail).
    let [detail] = listed.provisioning_artifact_details() else { panic!("{listed:?}") };
    assert_eq!(detail.id(), Some(version.as_str()));
    assert_eq!(detail.name(), Some("v1"));
    assert_eq!(detail.description(), Some("template sha256 v1"));
    assert_eq!(detail.active(), Some(true));
    assert_eq!(detail.guidance(), Some(&ProvisioningArtifactGuidance::Deprecated));
}

#[tokio::test]
async fn describe_provisioning_artifact_gives_the_template_url() {
    let (product, version) = product("describe-version").await;
    let described = catalog()
        .describe_provisioning_artifact()
        .product_id(&product)
        .provisioning_artifact_id(&version)
        .verbose(true)
        .send()
        .await
        .unwrap();
    // API_DescribeProvisioningArtifact, Response Elements: Info, "the URL of the CloudFormation
    // template in Amazon S3" under TemplateUrl (LoadTemplateFromURL is an input key only).
    let info = described.info().unwrap();
    assert!(info["TemplateUrl"].ends_with("/t.yml"), "{info:?}");
    assert!(!info.contains_key("LoadTemplateFromURL"));
}

#[tokio::test]
async fn search_products_as_admin_finds_a_product_by_name() {
    let (product, _) = product("searched-by-name").await;
    let found = catalog()
        .search_products_as_admin()
        .filters(aws_sdk_servicecatalog::types::ProductViewFilterBy::FullTextSearch, vec!["searched-by-name".into()])
        .send()
        .await
        .unwrap();
    // API_SearchProductsAsAdmin, Response Elements: ProductViewDetails[].ProductViewSummary
    // with Name and ProductId.
    let names: Vec<(&str, &str)> = found
        .product_view_details()
        .iter()
        .filter_map(|d| d.product_view_summary())
        .filter_map(|s| Some((s.name()?, s.product_id()?)))
        .collect();
    assert!(names.contains(&("searched-by-name", product.as_str())), "{names:?}");
}

#[tokio::test]
async fn a_product_in_a_portfolio_is_listed_with_its_launch_constraint() {
    let (product, _) = product("in-portfolio").await;
    let portfolio = portfolio().await;
    catalog().associate_product_with_portfolio().product_id(&product).portfolio_id(&portfolio).send().await.unwrap();
    // API_ListPortfoliosForProduct, Response Elements: PortfolioDetails[].Id.
    let listed = catalog().list_portfolios_for_product().product_id(&product).send().await.unwrap();
    assert_eq!(listed.portfolio_details().iter().filter_map(|p| p.id()).collect::<Vec<_>>(), [portfolio.as_str()]);

    let role = serde_json::json!({ "RoleArn": "arn:aws:iam::123456789012:role/launch" }).to_string();
    let constraint = catalog().create_constraint().portfolio_id(&portfolio).product_id(&product).r#type("LAUNCH");
    constraint.parameters(role).idempotency_token("launch").send().await.unwrap();
    // API_ListConstraintsForPortfolio, Response Elements: ConstraintDetails[] with Type,
    // ProductId and PortfolioId.
    let constraints =
        catalog().list_constraints_for_portfolio().portfolio_id(&portfolio).product_id(&product).send().await.unwrap();
    let [detail] = constraints.constraint_details() else { panic!("{constraints:?}") };
    assert_eq!((detail.r#type(), detail.product_id()), (Some("LAUNCH"), Some(product.as_str())));
}

#[tokio::test]
async fn a_constraint_needs_the_product_in_the_portfolio() {
    let (product, _) = product("not-associated").await;
    let portfolio = portfolio().await;
    let role = serde_json::json!({ "RoleArn": "arn:aws:iam::123456789012:role/launch" }).to_string();
    let constraint = catalog().create_constraint().portfolio_id(&portfolio).product_id(&product).r#type("LAUNCH");
    let refused = constraint.parameters(role).idempotency_token("orphan").send().await.unwrap_err();
    // API_CreateConstraint, Errors: ResourceNotFoundException.
    assert!(refused.as_service_error().is_some_and(|e| e.is_resource_not_found_exception()), "{refused:?}");
}

#[tokio::test]
async fn describe_portfolio_refuses_an_unknown_id() {
    let known = portfolio().await;
    // API_DescribePortfolio, Response Elements: PortfolioDetail.Id; Errors: ResourceNotFoundException.
    let described = catalog().describe_portfolio().id(&known).send().await.unwrap();
    assert_eq!(described.portfolio_detail().and_then(|p| p.id()), Some(known.as_str()));
    let refused = catalog().describe_portfolio().id("port-doesnotexist").send().await.unwrap_err();
    assert!(refused.as_service_error().is_some_and(|e| e.is_resource_not_found_exception()), "{refused:?}");
}

#[tokio::test]
async fn a_portfolio_lists_the_principals_it_is_shared_with() {
    let portfolio = portfolio().await;
    let studio = "arn:aws:iam::123456789012:role/studio";
    // API_ListPrincipalsForPortfolio, Response Elements: Principals[] with PrincipalARN and PrincipalType.
    let before = catalog().list_principals_for_portfolio().portfolio_id(&portfolio).send().await.unwrap();
    assert!(before.principals().is_empty());
    let share = catalog().associate_principal_with_portfolio().portfolio_id(&portfolio).principal_arn(studio);
    share.principal_type("IAM".into()).send().await.unwrap();
    let after = catalog().list_principals_for_portfolio().portfolio_id(&portfolio).send().await.unwrap();
    let [principal] = after.principals() else { panic!("{after:?}") };
    assert_eq!(principal.principal_arn(), Some(studio));
    assert_eq!(principal.principal_type().map(|t| t.as_str()), Some("IAM"));
}
