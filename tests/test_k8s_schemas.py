"""Every manifest under launch/k8s/ against its schema, offline:

- Kubernetes' own kinds (Job, Service, PersistentVolumeClaim) against the
  Kubernetes OpenAPI schemas that `kubernetes-validate` ships, strictly (an
  unknown field is an error, as `kubectl apply --validate=strict` makes it);
- the TFJob against the Kubeflow training operator's CRD schema, vendored in
  launch/k8s/schemas/ (its source and version: launch/k8s/schemas/README.md),
  made strict the same way where the CRD does not keep unknown fields.

A broken copy of each manifest fails, so that the check is known to bite.
"""

import copy
import glob
import os

import jsonschema
import kubernetes_validate
import tensorflow as tf
import yaml

from tests import helpers

K8S = os.path.join(helpers.REPO_ROOT, "launch", "k8s")
TFJOB_CRD = os.path.join(K8S, "schemas", "kubeflow.org_tfjobs.yaml")
# The Kubernetes version the manifests are checked against: the newest that
# kubernetes-validate ships (the manifests use no field newer than 1.27).
K8S_VERSION = kubernetes_validate.latest_version()


def _documents(path):
  with open(path, encoding="utf-8") as f:
    return [d for d in yaml.safe_load_all(f) if d]


def _strict(schema):
  """The schema with `additionalProperties: false` wherever it lists
  properties and does not keep unknown fields (what strict validation means)."""
  schema = copy.deepcopy(schema)

  def visit(node):
    if isinstance(node, dict):
      if ("properties" in node and "additionalProperties" not in node
          and not node.get("x-kubernetes-preserve-unknown-fields")):
        node["additionalProperties"] = False
      for value in node.values():
        visit(value)
    elif isinstance(node, list):
      for value in node:
        visit(value)

  visit(schema)
  return schema


def _crd_validator(path):
  with open(path, encoding="utf-8") as f:
    crd = yaml.safe_load(f)
  versions = {v["name"]: v for v in crd["spec"]["versions"]}
  group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
  return {(f"{group}/{name}", kind): jsonschema.Draft7Validator(
      _strict(v["schema"]["openAPIV3Schema"])) for name, v in versions.items()}


def validate(document, crds):
  """Raises with the first error: a CRD kind against its schema, any other
  kind against Kubernetes' own."""
  key = (document.get("apiVersion"), document.get("kind"))
  if key in crds:
    error = jsonschema.exceptions.best_match(crds[key].iter_errors(document))
    if error is not None:
      raise AssertionError(f"{key[1]}: {error.json_path}: {error.message[:300]}")
    return
  try:
    kubernetes_validate.validate(document, K8S_VERSION, strict=True)
  except kubernetes_validate.ValidationError as e:
    raise AssertionError(f"{key[1]}: {'.'.join(map(str, e.path))}: {e.message[:300]}") from None


class ManifestSchemaTest(tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.crds = _crd_validator(TFJOB_CRD)

  def _manifests(self):
    paths = sorted(glob.glob(os.path.join(K8S, "*.yaml")))
    self.assertEqual([os.path.basename(p) for p in paths], ["job.yaml", "pvc.yaml", "tfjob.yaml"])
    return {os.path.basename(p): _documents(p) for p in paths}

  def test_every_manifest_is_valid(self):
    checked = []
    for name, documents in self._manifests().items():
      for document in documents:
        validate(document, self.crds)
        checked.append(f"{name}: {document['kind']}")
    self.assertCountEqual(checked, ["job.yaml: Service", "job.yaml: Job",
                                    "pvc.yaml: PersistentVolumeClaim", "tfjob.yaml: TFJob"])
    print(f"valid against Kubernetes {K8S_VERSION} and the TFJob CRD: {', '.join(checked)}")

  def test_a_broken_manifest_fails(self):
    manifests = self._manifests()
    job = next(d for d in manifests["job.yaml"] if d["kind"] == "Job")
    broken = copy.deepcopy(job)
    container = broken["spec"]["template"]["spec"]["containers"][0]
    container["imagePullPolicy"] = 3  # A number where Kubernetes wants a string.
    with self.assertRaisesRegex(AssertionError, "Job: .*imagePullPolicy"):
      validate(broken, self.crds)
    misspelt = copy.deepcopy(job)
    misspelt["spec"]["template"]["spec"]["containres"] = (
        misspelt["spec"]["template"]["spec"].pop("containers"))
    with self.assertRaisesRegex(AssertionError, "Job: "):  # Unknown field, and none required.
      validate(misspelt, self.crds)
    pvc = copy.deepcopy(manifests["pvc.yaml"][0])
    pvc["spec"]["accessModes"] = "ReadWriteMany"  # A string where a list is wanted.
    with self.assertRaisesRegex(AssertionError, "PersistentVolumeClaim"):
      validate(pvc, self.crds)

  def test_a_broken_tfjob_fails_against_the_crd(self):
    tfjob = self._manifests()["tfjob.yaml"][0]
    broken = copy.deepcopy(tfjob)
    broken["spec"]["tfReplicaSpecs"]["Worker"]["replicas"] = "two"
    with self.assertRaisesRegex(AssertionError, r"TFJob: .*replicas"):
      validate(broken, self.crds)
    misspelt = copy.deepcopy(tfjob)
    misspelt["spec"]["runPolicy"]["cleanPodPolicies"] = misspelt["spec"]["runPolicy"].pop(
        "cleanPodPolicy")
    with self.assertRaisesRegex(AssertionError, "cleanPodPolicies"):
      validate(misspelt, self.crds)
    container = copy.deepcopy(tfjob)
    spec = container["spec"]["tfReplicaSpecs"]["Worker"]["template"]["spec"]
    spec["containers"][0]["resources"] = {"limitz": {}}  # The pod template is checked too.
    with self.assertRaisesRegex(AssertionError, "limitz"):
      validate(container, self.crds)


if __name__ == "__main__":
  tf.test.main()
