"""The NATS subject mappings the workers' fronts rely on (tracker.ingest.jetstream.server_mappings)."""

from pathlib import Path

from tracker.ingest.jetstream import mappings_config, server_mappings, subject_of, topic_of

ROOT = Path(__file__).resolve().parents[2]


def test_deploy_configuration_holds_the_mappings_of_the_default_settings() -> None:
    text = (ROOT / "deploy" / "nats" / "mappings.conf").read_text()
    assert mappings_config("", 64) in text
    for i in (1, 2, 3):
        assert "include ./mappings.conf" in (ROOT / "deploy" / "nats" / f"nats-{i}.conf").read_text()


def test_every_ingest_topic_is_mapped_under_its_partition_by_the_devices_own_tokens() -> None:
    # (topic filter's subject, the partition() of the mapping): a tag, a gateway, a reader, a phone
    expected = {
        "city-a.tracker.v1.tags.*.position": "partition(8,1)",
        "city-a.tracker.v1.gateways.*.positions": "partition(8,1)",
        "city-a.tracker.v1.readers.*.sightings": "partition(8,1)",
        "city-a.owntracks.*.*": "partition(8,1,2)",
        "city-a.owntracks.*.*.event": "partition(8,1,2)",
    }
    mappings = server_mappings("city-a/", 8)
    assert {src: dest.split("{{")[1].split("}}")[0] for src, dest in mappings.items()} == expected


def test_a_mapped_subject_gives_back_its_topic() -> None:
    topic = "tracker/v1/tags/watch.07/position"
    assert topic_of(f"tin.5.{subject_of(topic)}") == topic
    assert topic_of(subject_of(topic)) == topic
