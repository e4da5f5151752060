// Loaded by `.ci/run` into a copy of a plugin-api rustdoc page, in headless Chromium: reads
// whether plugin-api/rustdoc-header.html's style really hides abi_stable's blanket impls
// (`AlignerFor<N>`), in the page and in the sidebar, and keeps the standard library's
// (`Into<U>`), then writes the counts into an attribute of <body> for `--dump-dom`.
addEventListener("load", () => {
    const hidden = (el) => getComputedStyle(el).display === "none";
    const all = (selector) => [...document.querySelectorAll(selector)];
    // An impl's block is the <details> around its header, when it has docs to fold.
    const block = (el) => el.closest("details") || el;
    const aligners = all('#blanket-implementations-list [id^="impl-AlignerFor"]');
    const links = all('.sidebar a[href^="#impl-AlignerFor"]');
    const std = all('#blanket-implementations-list [id^="impl-Into"]');
    const counts = [
        `aligner-impls=${aligners.length}`,
        `aligner-impls-shown=${aligners.filter((el) => !hidden(block(el))).length}`,
        `aligner-links=${links.length}`,
        `aligner-links-shown=${links.filter((el) => !hidden(el.closest("li"))).length}`,
        `std-impls=${std.length}`,
        `std-impls-hidden=${std.filter((el) => hidden(block(el))).length}`,
    ];
    document.body.setAttribute("data-blanket-impls", counts.join(" "));
});
