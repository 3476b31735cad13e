"""The Service Catalog operations moto 5.2.5 lacks, added to its backend and response classes.

Faithful to the AWS API reference for the calls `cargo xtask publish` makes: provisioning
artifacts (create, list, describe, update; the first one made by CreateProduct), a template URL
that must name an object that exists in (moto's) S3, idempotency tokens, SearchProductsAsAdmin,
AssociateProductWithPortfolio and LAUNCH constraints, and the portfolio principals `cargo xtask
doctor` reads. Imported by moto_server.py before start.
"""
import json
import re
import uuid
from urllib.parse import unquote, urlparse

from moto.core.responses import ActionResult, EmptyResult
from moto.core.utils import utcnow
from moto.s3.models import s3_backends
from moto.servicecatalog import models, responses
from moto.servicecatalog.exceptions import InvalidParametersException, ResourceNotFoundException
from moto.utilities.utils import get_partition

Backend = models.ServiceCatalogBackend
Response = responses.ServiceCatalogResponse


def _short_id(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:13]}"


def _bucket_and_key(url):
    """Bucket and key of an S3 object URL, virtual-hosted or path style."""
    parsed = urlparse(url)
    host, path = parsed.netloc, unquote(parsed.path.lstrip("/"))
    virtual = re.match(r"^(?P<bucket>.+)\.s3[.-]([a-z0-9-]+\.)?amazonaws\.com(\.cn)?$", host)
    if virtual:
        return virtual.group("bucket"), path
    bucket, _, key = path.partition("/")
    return bucket, key


def _check_template_url(backend, info):
    url = (info or {}).get("LoadTemplateFromURL")
    if not url:
        raise InvalidParametersException("Info must contain LoadTemplateFromURL")
    bucket, key = _bucket_and_key(url)
    s3 = s3_backends[backend.account_id][get_partition(backend.region_name)]
    try:
        found = s3.get_object(bucket, key)
    except Exception:  # moto raises MissingBucket for an unknown bucket
        found = None
    if found is None:
        raise InvalidParametersException(f"Unable to retrieve the template from {url}: the object does not exist")


def _artifact(parameters):
    return {
        "Id": _short_id("pa"),
        "Name": parameters.get("Name", ""),
        "Description": parameters.get("Description", ""),
        "Type": parameters.get("Type", "CLOUD_FORMATION_TEMPLATE"),
        "CreatedTime": utcnow(),
        "Active": True,
        "Guidance": "DEFAULT",
        "Info": parameters.get("Info", {}),
    }


def _detail(artifact):
    return {k: v for k, v in artifact.items() if k != "Info"}


def _info(artifact):
    """What Create/Describe/UpdateProvisioningArtifact return as `Info`: not the input map
    (`LoadTemplateFromURL` is an input key only, API_ProvisioningArtifactProperties) but
    `TemplateUrl`, the template Service Catalog copied for itself (API_DescribeProvisioningArtifact,
    Response Elements: Info). The copy's bytes are the input's; its URL here is the input's too."""
    return {"TemplateUrl": artifact["Info"].get("LoadTemplateFromURL", "")}


def _product(backend, product_id):
    product = backend.products.get(product_id)
    if product is None:
        raise ResourceNotFoundException(f"Product {product_id} not found.")
    return product


def _artifacts(backend):
    if not hasattr(backend, "artifacts"):
        backend.artifacts = {}  # product id -> [artifact]
        backend.associations = set()  # (portfolio id, product id)
        backend.constraints = {}
    return backend.artifacts


# DescribePortfolio: moto answers an unknown ID with an empty portfolio; AWS refuses it.
_describe_portfolio = Backend.describe_portfolio


def describe_portfolio(self, accept_language, id):
    if id not in self.portfolios:
        raise ResourceNotFoundException(f"Portfolio {id} not found.")
    return _describe_portfolio(self, accept_language, id)


# CreateProduct: validate the first artifact's template and create it.
_create_product = Backend.create_product


def create_product(self, *args, **kwargs):
    token = kwargs.get("idempotency_token")
    if token and token in self.idempotency_tokens:
        return self.products[self.idempotency_tokens[token]]
    parameters = kwargs.get("provisioning_artifact_parameters")
    if parameters:
        _check_template_url(self, parameters.get("Info"))
    product = _create_product(self, *args, **kwargs)
    _artifacts(self)[product.id] = [_artifact(parameters)] if parameters else []
    return product


def create_provisioning_artifact(self, product_id, parameters, idempotency_token):
    _product(self, product_id)
    if idempotency_token in self.idempotency_tokens:
        artifact_id = self.idempotency_tokens[idempotency_token]
        return next(a for a in _artifacts(self)[product_id] if a["Id"] == artifact_id)
    _check_template_url(self, parameters.get("Info"))
    artifact = _artifact(parameters)
    _artifacts(self).setdefault(product_id, []).append(artifact)
    self.idempotency_tokens[idempotency_token] = artifact["Id"]
    return artifact


def find_artifact(self, product_id, artifact_id):
    _product(self, product_id)
    for artifact in _artifacts(self).get(product_id, []):
        if artifact["Id"] == artifact_id:
            return artifact
    raise ResourceNotFoundException(f"Provisioning artifact {artifact_id} not found for product {product_id}.")


def associate_product_with_portfolio(self, product_id, portfolio_id):
    _product(self, product_id)
    if portfolio_id not in self.portfolios:
        raise ResourceNotFoundException(f"Portfolio {portfolio_id} not found.")
    _artifacts(self)
    self.associations.add((portfolio_id, product_id))


def create_constraint(self, portfolio_id, product_id, constraint_type, parameters, idempotency_token):
    if (portfolio_id, product_id) not in getattr(self, "associations", set()):
        raise ResourceNotFoundException(f"Product {product_id} is not in portfolio {portfolio_id}.")
    if constraint_type != "LAUNCH" or "RoleArn" not in json.loads(parameters or "{}"):
        raise InvalidParametersException("A LAUNCH constraint needs Parameters {\"RoleArn\": ...}")
    if idempotency_token in self.constraints:
        return self.constraints[idempotency_token]
    constraint = {
        "ConstraintId": _short_id("cons"),
        "Type": constraint_type,
        "Owner": self.account_id,
        "ProductId": product_id,
        "PortfolioId": portfolio_id,
        "Parameters": parameters,
    }
    self.constraints[idempotency_token] = constraint
    return constraint


for name, function in [
    ("describe_portfolio", describe_portfolio),
    ("create_product", create_product),
    ("create_provisioning_artifact", create_provisioning_artifact),
    ("find_artifact", find_artifact),
    ("associate_product_with_portfolio", associate_product_with_portfolio),
    ("create_constraint", create_constraint),
]:
    setattr(Backend, name, function)


# Responses. CreateProduct's own response leaves ProvisioningArtifactDetail empty: fill it in.
_create_product_response = Response.create_product


def create_product_response(self):
    result = _create_product_response(self)
    product_id = result.result["ProductViewDetail"]["ProductViewSummary"]["ProductId"]
    created = _artifacts(self.servicecatalog_backend).get(product_id, [])
    if created:
        result.result["ProvisioningArtifactDetail"] = _detail(created[0])
    return result


def create_provisioning_artifact_response(self):
    params = json.loads(self.body)
    artifact = self.servicecatalog_backend.create_provisioning_artifact(
        params["ProductId"], params["Parameters"], params["IdempotencyToken"]
    )
    return ActionResult({"ProvisioningArtifactDetail": _detail(artifact), "Info": _info(artifact), "Status": "AVAILABLE"})


def list_provisioning_artifacts_response(self):
    params = json.loads(self.body)
    _product(self.servicecatalog_backend, params["ProductId"])
    artifacts = _artifacts(self.servicecatalog_backend).get(params["ProductId"], [])
    return ActionResult({"ProvisioningArtifactDetails": [_detail(a) for a in artifacts]})


def describe_provisioning_artifact_response(self):
    params = json.loads(self.body)
    artifact = self.servicecatalog_backend.find_artifact(params["ProductId"], params["ProvisioningArtifactId"])
    return ActionResult({"ProvisioningArtifactDetail": _detail(artifact), "Info": _info(artifact), "Status": "AVAILABLE"})


def update_provisioning_artifact_response(self):
    params = json.loads(self.body)
    artifact = self.servicecatalog_backend.find_artifact(params["ProductId"], params["ProvisioningArtifactId"])
    for field in ("Name", "Description", "Active", "Guidance"):
        if field in params:
            artifact[field] = params[field]
    return ActionResult({"ProvisioningArtifactDetail": _detail(artifact), "Info": _info(artifact), "Status": "AVAILABLE"})


def search_products_as_admin_response(self):
    params = json.loads(self.body)
    words = [w.lower() for w in params.get("Filters", {}).get("FullTextSearch", [])]
    backend = self.servicecatalog_backend
    details = []
    for product in backend.products.values():
        if words and not any(w in product.name.lower() for w in words):
            continue
        details.append({"ProductViewSummary": product.to_dict(), "Status": "AVAILABLE", "ProductARN": product.arn, "CreatedTime": product.created_time})
    return ActionResult({"ProductViewDetails": details})


def associate_product_with_portfolio_response(self):
    params = json.loads(self.body)
    self.servicecatalog_backend.associate_product_with_portfolio(params["ProductId"], params["PortfolioId"])
    return EmptyResult()


def create_constraint_response(self):
    params = json.loads(self.body)
    constraint = self.servicecatalog_backend.create_constraint(
        params["PortfolioId"], params["ProductId"], params["Type"], params.get("Parameters"), params["IdempotencyToken"]
    )
    detail = {k: v for k, v in constraint.items() if k != "Parameters"}
    return ActionResult({"ConstraintDetail": detail, "ConstraintParameters": constraint["Parameters"], "Status": "AVAILABLE"})


def list_portfolios_for_product_response(self):
    """API_ListPortfoliosForProduct: `PortfolioDetails`, the portfolios the product is in."""
    params = json.loads(self.body)
    backend = self.servicecatalog_backend
    _product(backend, params["ProductId"])
    _artifacts(backend)
    details = [
        backend.portfolios[portfolio].to_dict()
        for portfolio, product in sorted(backend.associations)
        if product == params["ProductId"] and portfolio in backend.portfolios
    ]
    return ActionResult({"PortfolioDetails": details})


def list_constraints_for_portfolio_response(self):
    """API_ListConstraintsForPortfolio: `ConstraintDetails` of the portfolio, of one product
    when `ProductId` is given."""
    params = json.loads(self.body)
    backend = self.servicecatalog_backend
    if params["PortfolioId"] not in backend.portfolios:
        raise ResourceNotFoundException(f"Portfolio {params['PortfolioId']} not found.")
    _artifacts(backend)
    details = [
        {k: v for k, v in constraint.items() if k != "Parameters"}
        for constraint in backend.constraints.values()
        if constraint["PortfolioId"] == params["PortfolioId"]
        and params.get("ProductId") in (None, constraint["ProductId"])
    ]
    return ActionResult({"ConstraintDetails": details})


def associate_principal_with_portfolio_response(self):
    """API_AssociatePrincipalWithPortfolio: PortfolioId, PrincipalARN, PrincipalType (IAM or
    IAM_PATTERN); an empty answer."""
    params = json.loads(self.body)
    backend = self.servicecatalog_backend
    if params["PortfolioId"] not in backend.portfolios:
        raise ResourceNotFoundException(f"Portfolio {params['PortfolioId']} not found.")
    if params.get("PrincipalType") not in ("IAM", "IAM_PATTERN"):
        raise InvalidParametersException("PrincipalType must be IAM or IAM_PATTERN")
    principals = backend.__dict__.setdefault("portfolio_principals", {})
    entry = {"PrincipalARN": params["PrincipalARN"], "PrincipalType": params["PrincipalType"]}
    listed = principals.setdefault(params["PortfolioId"], [])
    if entry not in listed:
        listed.append(entry)
    return EmptyResult()


def list_principals_for_portfolio_response(self):
    """API_ListPrincipalsForPortfolio: `Principals`, each with PrincipalARN and PrincipalType."""
    params = json.loads(self.body)
    backend = self.servicecatalog_backend
    if params["PortfolioId"] not in backend.portfolios:
        raise ResourceNotFoundException(f"Portfolio {params['PortfolioId']} not found.")
    principals = backend.__dict__.get("portfolio_principals", {}).get(params["PortfolioId"], [])
    return ActionResult({"Principals": list(principals)})


for name, function in [
    ("associate_principal_with_portfolio", associate_principal_with_portfolio_response),
    ("list_principals_for_portfolio", list_principals_for_portfolio_response),
    ("list_portfolios_for_product", list_portfolios_for_product_response),
    ("list_constraints_for_portfolio", list_constraints_for_portfolio_response),
    ("create_product", create_product_response),
    ("create_provisioning_artifact", create_provisioning_artifact_response),
    ("list_provisioning_artifacts", list_provisioning_artifacts_response),
    ("describe_provisioning_artifact", describe_provisioning_artifact_response),
    ("update_provisioning_artifact", update_provisioning_artifact_response),
    ("search_products_as_admin", search_products_as_admin_response),
    ("associate_product_with_portfolio", associate_product_with_portfolio_response),
    ("create_constraint", create_constraint_response),
]:
    setattr(Response, name, function)
