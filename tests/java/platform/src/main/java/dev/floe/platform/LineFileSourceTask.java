package dev.floe.platform;

import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.apache.kafka.connect.data.Schema;
import org.apache.kafka.connect.errors.ConnectException;
import org.apache.kafka.connect.source.SourceRecord;
import org.apache.kafka.connect.source.SourceTask;

/**
 * Emits each complete line of the file after the position the offset topic holds.
 *
 * <p>The source partition is {@code {"filename": path}} and the offset {@code {"position": bytes}}
 * just past the line, as FileStreamSourceTask records them: the worker commits them to
 * {@code offset.storage.topic} every {@code offset.flush.interval.ms}, and a task started again
 * seeks there. A line without its newline yet is left for the next poll.
 */
public final class LineFileSourceTask extends SourceTask {
    private String file;
    private String topic;
    private long position;
    private RandomAccessFile in;

    @Override
    public void start(Map<String, String> props) {
        file = props.get("file");
        topic = props.get("topic");
        Map<String, Object> committed = context.offsetStorageReader().offset(partition());
        position = committed == null ? 0L : ((Number) committed.get("position")).longValue();
    }

    private Map<String, String> partition() {
        return Map.of("filename", file);
    }

    @Override
    public List<SourceRecord> poll() throws InterruptedException {
        List<SourceRecord> out = new ArrayList<>();
        try {
            if (in == null) {
                if (!new java.io.File(file).exists()) {
                    Thread.sleep(200);
                    return null;
                }
                in = new RandomAccessFile(file, "r");
            }
            in.seek(position);
            byte[] chunk = new byte[64 * 1024];
            int n = in.read(chunk);
            int start = 0;
            for (int i = 0; i < Math.max(n, 0) && out.size() < 500; i++) {
                if (chunk[i] != '\n') continue;
                String line = new String(chunk, start, i - start, StandardCharsets.UTF_8);
                long next = position + i + 1;
                out.add(new SourceRecord(partition(), Map.of("position", next), topic, null, null, null,
                        Schema.STRING_SCHEMA, line));
                start = i + 1;
            }
            position += start;
        } catch (IOException exc) {
            throw new ConnectException("reading " + file, exc);
        }
        if (out.isEmpty()) {
            Thread.sleep(200);
            return null;
        }
        return out;
    }

    @Override
    public void stop() {
        try {
            if (in != null) in.close();
        } catch (IOException ignored) {
            // closing a read-only file loses nothing
        }
    }

    @Override
    public String version() {
        return "1";
    }
}
