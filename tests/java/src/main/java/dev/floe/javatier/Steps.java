package dev.floe.javatier;

import java.util.LinkedHashMap;
import java.util.Map;
import java.util.concurrent.ExecutionException;

/** Records each step of a scenario as {ok, error, ...details} so one failure does not hide the rest. */
final class Steps {
    private Steps() {}

    interface Step {
        Map<String, Object> run() throws Exception;
    }

    static void step(Map<String, Object> verdict, String name, Step step) {
        Map<String, Object> result = new LinkedHashMap<>();
        try {
            Map<String, Object> details = step.run();
            result.put("ok", true);
            if (details != null) result.putAll(details);
        } catch (Throwable t) {
            result.put("ok", false);
            result.put("error", describe(t));
        }
        verdict.put(name, result);
    }

    /** The exception a user would see: the cause of an ExecutionException, class and message. */
    static String describe(Throwable t) {
        Throwable cause = t;
        while (cause instanceof ExecutionException && cause.getCause() != null) cause = cause.getCause();
        return cause.getClass().getName() + ": " + cause.getMessage();
    }

    static Map<String, Object> map(Object... kv) {
        Map<String, Object> out = new LinkedHashMap<>();
        for (int i = 0; i + 1 < kv.length; i += 2) out.put(String.valueOf(kv[i]), kv[i + 1]);
        return out;
    }
}
