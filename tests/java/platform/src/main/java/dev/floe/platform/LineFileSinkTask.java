package dev.floe.platform;

import java.io.FileOutputStream;
import java.io.IOException;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.util.Collection;
import java.util.Map;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.connect.errors.ConnectException;
import org.apache.kafka.connect.sink.SinkRecord;
import org.apache.kafka.connect.sink.SinkTask;

/**
 * Appends values to the file and syncs it before the worker commits the consumer offsets
 * ({@code flush} runs first), so a committed offset never covers a line the file lacks.
 */
public final class LineFileSinkTask extends SinkTask {
    private OutputStream out;

    @Override
    public void start(Map<String, String> props) {
        try {
            out = new FileOutputStream(props.get("file"), true);
        } catch (IOException exc) {
            throw new ConnectException("opening " + props.get("file"), exc);
        }
    }

    @Override
    public void put(Collection<SinkRecord> records) {
        try {
            for (SinkRecord r : records) out.write((r.value() + "\n").getBytes(StandardCharsets.UTF_8));
        } catch (IOException exc) {
            throw new ConnectException("appending", exc);
        }
    }

    @Override
    public void flush(Map<TopicPartition, OffsetAndMetadata> offsets) {
        try {
            out.flush();
            ((FileOutputStream) out).getFD().sync();
        } catch (IOException exc) {
            throw new ConnectException("syncing", exc);
        }
    }

    @Override
    public void stop() {
        try {
            if (out != null) out.close();
        } catch (IOException exc) {
            throw new ConnectException("closing", exc);
        }
    }

    @Override
    public String version() {
        return "1";
    }
}
