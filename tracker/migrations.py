"""Schema migrations, one function per step. Never edit a released step: add one."""

from sqlite_utils import Migrations

migrations = Migrations("llm-pv")


@migrations()
def m001_datasets(db):
    """Datasets, stored once per content fingerprint, and their examples."""
    db["datasets"].create(
        {
            "id": int,
            "fingerprint": str,
            "fn": str,
            "target": str,
            "kind": str,
            "length": int,
            "train_size": int,
            "val_size": int,
            "test_size": int,
            "train_effective": int,
            "val_effective": int,
            "test_effective": int,
            "base_seed": int,
            "derived_seed": int,
            "generator_version": int,
            "created_at": str,
        },
        pk="id",
        not_null={"fingerprint", "fn", "length", "base_seed", "derived_seed"},
    )
    db["datasets"].create_index(["fingerprint"], unique=True)
    # The request a dataset answers: a second build of the same request is a cache hit.
    db["datasets"].create_index(
        ["fn", "length", "train_size", "val_size", "test_size", "base_seed", "generator_version"],
        unique=True,
        index_name="idx_datasets_request",
    )
    db["examples"].create(
        {"dataset_id": int, "split": str, "idx": int, "input": str, "label": int},
        pk=("dataset_id", "split", "idx"),
        foreign_keys=[("dataset_id", "datasets", "id")],
        not_null={"input", "label"},
    )
