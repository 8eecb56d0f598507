"""Drives exosim with Exoscale's official Python SDK (PyPI `exoscale`), through the
operations a baton swap uses, and prints what it saw as one JSON object.

Run by tests/exoscale_sdk.rs: EXOSIM_URL, EXOSCALE_API_KEY and EXOSCALE_API_SECRET in the
environment. Every call goes through the SDK (or its signer, for the raw requests), so
exosim is checked against a client nobody on this team wrote.
"""

import base64
import json
import os
import sys

import requests
from exoscale.api.exceptions import ExoscaleAPIClientException
from exoscale.api.v2 import Client
from exoscale_auth import ExoscaleV2Auth

url = os.environ["EXOSIM_URL"]
key = os.environ["EXOSCALE_API_KEY"]
secret = os.environ["EXOSCALE_API_SECRET"]
c = Client(key, secret, url=url)
seen = {}

# list-zones: sent unsigned by the SDK itself.
zones = c.list_zones()["zones"]
seen["zone_endpoint"] = zones[0]["api-endpoint"]

templates = c.list_templates(visibility="public", family="debian")["templates"]
seen["debian_templates"] = sorted(t["name"] for t in templates)
seen["ubuntu_templates"] = len(c.list_templates(family="ubuntu")["templates"])
types = c.list_instance_types()["instance-types"]
small = next(t for t in types if t["family"] == "standard" and t["size"] == "small")
groups = c.list_security_groups(visibility="private")["security-groups"]
web = next(g for g in groups if g["name"] == "web")
seen["public_security_groups"] = len(c.list_security_groups(visibility="public")["security-groups"])
eip = c.list_elastic_ips()["elastic-ips"][0]

c.register_ssh_key(
    name="sdk-key",
    public_key="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFUUzlLDOmtTKgi2ij2hfn2vGd8IT6/Xgv+3DpUVcYR7 sdk",
)
seen["ssh_keys"] = [k["name"] for k in c.list_ssh_keys()["ssh-keys"]]

op = c.create_instance(
    name="sdk-1",
    template={"id": templates[0]["id"]},
    instance_type={"id": small["id"]},
    disk_size=10,
    labels={"baton.site": "sdk", "baton.generation": "1"},
    ssh_key={"name": "sdk-key"},
    security_groups=[{"id": web["id"]}],
    user_data=base64.b64encode(b"#cloud-config\n").decode(),
)
done = c.wait(op["id"], max_wait_time=30)
instance_id = done["reference"]["id"]
instance = c.get_instance(id=instance_id)
seen["instance_state"] = instance["state"]
seen["by_label"] = [i["name"] for i in c.list_instances(labels="baton.site=sdk")["instances"]]
seen["by_manager"] = len(c.list_instances(manager_type="instance-pool")["instances"])

c.wait(c.attach_instance_to_elastic_ip(id=eip["id"], instance={"id": instance_id})["id"], max_wait_time=30)
seen["holders"] = [i["id"] for i in c.list_instances(ip_address=eip["ip"])["instances"]]
c.wait(c.detach_instance_from_elastic_ip(id=eip["id"], instance={"id": instance_id})["id"], max_wait_time=30)
seen["holders_after_detach"] = len(c.list_instances(ip_address=eip["ip"])["instances"])

# A parameter with an empty value, as the SDK's signer leaves it: unlisted, unsigned.
auth = ExoscaleV2Auth(key, secret)
r = requests.get(url + "/instance", params={"labels": "", "ip-address": eip["ip"]}, auth=auth)
seen["blank_parameter_status"] = r.status_code

# What the spec refuses, refused as Exoscale would: a non-uuid id, an unknown enum value.
for name, call in [
    ("bad_id", lambda: c.get_instance(id="not-a-uuid")),
    ("bad_enum", lambda: c.list_templates(visibility="secret")),
]:
    try:
        call()
        seen[name] = 200
    except ExoscaleAPIClientException as e:
        seen[name] = e.response.status_code if e.response is not None else -1

c.wait(c.delete_instance(id=instance_id)["id"], max_wait_time=30)
c.delete_ssh_key(name="sdk-key")
seen["instances_left"] = len(c.list_instances()["instances"])
seen["ssh_keys_left"] = len(c.list_ssh_keys()["ssh-keys"])

json.dump(seen, sys.stdout)
