"""An outside Kafka client for tradeflow's tests: confluent-kafka (librdkafka's Python
binding), which the project did not write.

    kafka_client.py BROKERS create TOPIC PARTITIONS
    kafka_client.py BROKERS produce TOPIC NDJSON_FILE   -> JSON [[partition, offset], ...] per line
    kafka_client.py BROKERS consume TOPIC               -> JSON {"partitions": N, "records": [...]}
    kafka_client.py BROKERS offsets TOPIC TIME_MS       -> JSON {"P": [low, high, offset_for_time], ...}
    kafka_client.py BROKERS produce-avro TOPIC NDJSON_FILE REGISTRY_URL -> like produce

`produce-avro` is an outside Avro producer with a writer schema of its own (`p` and `v`
as doubles, `t` a timestamp-millis long): it registers that schema under `TOPIC-value`
with the registry, as Confluent's serializers do, and writes each trade in the Confluent
wire format (magic 0, the schema id, Avro binary encoded here by hand).

`produce` sends each line of a flat-trade NDJSON file as one record, key = the trade's
symbol, timestamp = its `t` (as an ingestion producer would), one at a time in file
order, and prints where each line landed. `consume` reads every partition from the
beginning to its end and prints each record's partition, offset, key, timestamp and value
(text, or hex for binary values).
"""

import json
import struct
import sys
import time
import urllib.request

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic


def create(brokers, topic, partitions):
    admin = AdminClient({"bootstrap.servers": brokers})
    futures = admin.create_topics([NewTopic(topic, num_partitions=int(partitions), replication_factor=1)])
    for future in futures.values():
        future.result(30)
    # Wait until the metadata shows every partition.
    deadline = time.time() + 30
    while time.time() < deadline:
        topics = admin.list_topics(topic, timeout=10).topics
        if topic in topics and topics[topic].error is None and len(topics[topic].partitions) == int(partitions):
            print(json.dumps({"partitions": int(partitions)}))
            return
        time.sleep(0.1)
    raise SystemExit(f"topic {topic} did not appear with {partitions} partitions")


DOUBLES_SCHEMA = json.dumps({
    "type": "record",
    "name": "Trade",
    "namespace": "tests.outside",
    "fields": [
        {"name": "s", "type": "string"},
        {"name": "p", "type": "double"},
        {"name": "t", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "v", "type": "double"},
        {"name": "c", "type": ["null", {"type": "array", "items": "string"}], "default": None},
    ],
})


def avro_long(n):
    z = (n << 1) ^ (n >> 63)
    out = bytearray()
    while z >= 0x80:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


def avro_string(text):
    data = text.encode("utf-8")
    return avro_long(len(data)) + data


def avro_doubles(schema_id, trade):
    """One trade in the wire format with DOUBLES_SCHEMA."""
    out = b"\x00" + struct.pack(">I", schema_id)
    out += avro_string(trade["s"]) + struct.pack("<d", float(trade["p"]))
    out += avro_long(int(trade["t"])) + struct.pack("<d", float(trade["v"]))
    conditions = trade.get("c")
    if conditions is None:
        out += avro_long(0)
    else:
        out += avro_long(1)
        if conditions:
            out += avro_long(len(conditions)) + b"".join(avro_string(c) for c in conditions)
        out += avro_long(0)
    return out


def register(registry, subject, schema):
    request = urllib.request.Request(
        f"{registry}/subjects/{subject}/versions",
        data=json.dumps({"schema": schema}).encode(),
        headers={"Content-Type": "application/vnd.schemaregistry.v1+json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)["id"]


def produce_avro(brokers, topic, path, registry):
    schema_id = register(registry.rstrip("/"), f"{topic}-value", DOUBLES_SCHEMA)
    produce(brokers, topic, path, encode=lambda line: avro_doubles(schema_id, json.loads(line)))


def produce(brokers, topic, path, encode=lambda line: line):
    producer = Producer({
        "bootstrap.servers": brokers,
        "enable.idempotence": True,
        "linger.ms": 5,
        "compression.type": "lz4",
    })
    with open(path, "rb") as f:
        lines = [line.rstrip(b"\n") for line in f if line.strip()]
    where = [None] * len(lines)
    errors = []

    def delivered(index):
        def callback(err, msg):
            if err is not None:
                errors.append(str(err))
            else:
                where[index] = [msg.partition(), msg.offset()]
        return callback

    for index, line in enumerate(lines):
        trade = json.loads(line)
        while True:
            try:
                producer.produce(topic, value=encode(line), key=trade["s"].encode(), timestamp=trade["t"],
                                 on_delivery=delivered(index))
                break
            except BufferError:
                producer.poll(0.05)
        if index % 1000 == 0:
            producer.poll(0)
    remaining = producer.flush(120)
    if errors or remaining:
        raise SystemExit(f"delivery failed: {errors[:3]} ({remaining} undelivered)")
    json.dump(where, sys.stdout)


def consume(brokers, topic):
    consumer = Consumer({
        "bootstrap.servers": brokers,
        "group.id": "tradeflow-tests-reader",
        "enable.auto.commit": False,
        "enable.partition.eof": True,
        "auto.offset.reset": "earliest",
    })
    metadata = consumer.list_topics(topic, timeout=10)
    partitions = sorted(metadata.topics[topic].partitions)
    consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
    remaining = set(partitions)
    records = []
    deadline = time.time() + 120
    while remaining and time.time() < deadline:
        msg = consumer.poll(1.0)
        if msg is None:
            continue
        if msg.error():
            if msg.error().code() == KafkaError._PARTITION_EOF:
                remaining.discard(msg.partition())
                continue
            raise SystemExit(f"consume: {msg.error()}")
        value = msg.value() or b""
        try:
            text = value.decode("utf-8")
            value_out = {"text": text} if value[:1] != b"\x00" else {"hex": value.hex()}
        except UnicodeDecodeError:
            value_out = {"hex": value.hex()}
        records.append({
            "partition": msg.partition(),
            "offset": msg.offset(),
            "key": (msg.key() or b"").decode("utf-8"),
            "timestamp": msg.timestamp()[1],
            **value_out,
        })
    consumer.close()
    if remaining:
        raise SystemExit(f"consume: partitions {sorted(remaining)} never reached their end")
    json.dump({"partitions": len(partitions), "records": records}, sys.stdout)


def offsets(brokers, topic, ts):
    """The broker's answers to ListOffsets: watermarks, and the offset for a time."""
    consumer = Consumer({"bootstrap.servers": brokers, "group.id": "tradeflow-tests-offsets"})
    partitions = sorted(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
    found = consumer.offsets_for_times([TopicPartition(topic, p, int(ts)) for p in partitions], timeout=10)
    out = {}
    for tp in found:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, tp.partition), timeout=10, cached=False)
        out[str(tp.partition)] = [low, high, tp.offset]
    consumer.close()
    json.dump(out, sys.stdout)


def main():
    brokers, command, *args = sys.argv[1:]
    commands = {"create": create, "produce": produce, "produce-avro": produce_avro, "consume": consume,
                "offsets": offsets}
    commands[command](brokers, *args)


if __name__ == "__main__":
    main()
